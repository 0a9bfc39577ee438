"""Schemathesis hooks for ``make fuzz`` (loaded through ``SCHEMATHESIS_HOOKS``; runs inside ``st``).

Two checks are narrowed, and only here. The runner excludes the built-in ones and registers these
instead, which apply them unchanged except for what no JSON Schema keyword can state.

``negative_data_rejection`` ("a request the schema calls invalid must be refused") excuses a JSON
body whose only fault is whitespace around a string that the server trims before checking it (a
65-character name that is 64 once trimmed): the body is re-validated, trimmed, against the schema.

``positive_data_acceptance`` ("a request the schema calls valid must be accepted") excuses
rejections whose error envelope names a rule that no JSON Schema keyword can state. Everything the schema *can* state (types, lengths, patterns, required
fields, ``version``, the ``Idempotency-Key`` format, refused ``$``/``.`` keys) still fails the run.

Excused, and why:

- A domain error code (anything but ``request.*`` and ``idempotency.bad_key``): the request was well
  formed and a service refused it for a reason that lives in the data — a referenced team or user
  that does not exist or is not in the lead's team, a stage move not allowed from the current stage,
  ``from`` after ``to``, a reminder after the due time, a payment dated in the future, answers that
  are not the form's fields, a weighted rule without weights.
- ``request.bad_cursor``: cursors (``cursor``, ``since``) are opaque tokens the server issued; the
  schema can only say "a string".
- ``request.invalid`` whose every detail is one of the API's own rule codes (not a pydantic
  type or constraint code): time windows relative to now (a follow-up within the last 30 days),
  phone numbers that must normalise to a mainland mobile number; and ``value_error`` from a
  model-level rule across fields (``start`` before ``end``, a weighted rule needs weights), whose
  ``field`` is the body (null) or the sub-object.
- Two pydantic codes, only when the value sent shows the schema could not have said it:
  ``int_type`` for an integral float (JSON Schema's ``integer`` includes ``5.0``; request models
  are strict and want ``5``), and a length or pattern error on a string with surrounding
  whitespace (request models strip it before checking).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import schemathesis
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.core.jsonschema import make_validator
from schemathesis.core.parameters import ParameterLocation
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

# The shapes a schema describes: pydantic's own error types. A schema-valid request must never get
# one of these (apart from the two value-checked cases below).
_PYDANTIC_CODE = re.compile(
    r"(_type|_parsing|_too_short|_too_long|_pattern_mismatch|_error|_forbidden|_invalid)$"
    r"|^(missing|enum|greater_than|greater_than_equal|less_than|less_than_equal|multiple_of|finite_number"
    r"|timezone_aware|timezone_naive|too_short|too_long|union_tag_not_found|decimal_max_digits)$"
)
_SHAPE_ENVELOPES = {
    "request.malformed_json", "request.not_object", "request.operator_key", "request.version_required",
    "request.unsupported_media_type", "request.too_large", "idempotency.bad_key", "request.invalid",
}
_STRIPPED = {"string_too_short", "string_too_long", "string_pattern_mismatch", "too_short"}


def _sent(case: Any, field: str | None) -> Any:
    """The value the case sent at a detail's ``field`` ("a.b.3"), from the body or the query."""
    if not field:
        return None
    node: Any = case.body if isinstance(case.body, (dict, list)) else None
    if node is None or (isinstance(node, dict) and field.split(".")[0] not in node):
        node = case.query or {}
    for part in field.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _excused_detail(case: Any, detail: dict) -> bool:
    code, field = detail.get("code") or "", detail.get("field")
    value = _sent(case, field)
    if code == "value_error" and (not field or isinstance(value, dict)):
        return True  # a model-level rule across fields (the body's, or a sub-object's)
    if not _PYDANTIC_CODE.search(code):
        return True  # one of our own rule codes
    if code == "int_type":
        return isinstance(value, float) and value.is_integer()
    if code in _STRIPPED:
        return isinstance(value, str) and value != value.strip()
    return False


def excused(case: Any, response: Any) -> bool:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    code = error.get("code") or ""
    if code == "request.bad_cursor":
        return True
    if code not in _SHAPE_ENVELOPES and not code.startswith("request."):
        return True
    if code == "request.invalid":
        details = error.get("details") or []
        return bool(details) and all(_excused_detail(case, d) for d in details)
    return False


@schemathesis.check
def positive_data_acceptance_for_mpcrm(ctx, response, case):
    """``positive_data_acceptance``, except for the rules listed in this module's docstring."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        if excused(case, response):
            return None
        _record(case, response)
        raise


def _record(case: Any, response: Any) -> None:
    """What was not excused, for the runner's summary (FUZZ_HOOK_LOG, one JSON line each)."""
    path = os.environ.get("FUZZ_HOOK_LOG")
    if not path:
        return
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    details = [d for d in error.get("details") or [] if not _excused_detail(case, d)] if error.get("code") == "request.invalid" else []
    line = {
        "operation": f"{case.method} {case.path}", "status": response.status_code, "code": error.get("code"),
        "details": [{"field": d.get("field"), "code": d.get("code")} for d in details],
    }
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(line, ensure_ascii=False) + "\n")


def _trimmed(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list):
        return [_trimmed(v) for v in value]
    if isinstance(value, dict):
        return {k: _trimmed(v) for k, v in value.items()}
    return value


def valid_once_trimmed(case: Any) -> bool:
    """Whether a negative JSON body is schema-valid as the server reads it: request models strip
    surrounding whitespace before any length or pattern check (``str_strip_whitespace``)."""
    meta = case.meta
    if meta is None or not meta.is_negative_at(ParameterLocation.BODY):
        return False
    if any(meta.is_negative_at(loc) for loc in (ParameterLocation.QUERY, ParameterLocation.HEADER, ParameterLocation.PATH, ParameterLocation.COOKIE)):
        return False
    trimmed = _trimmed(case.body)
    if trimmed == case.body:
        return False
    body = case.operation.get_body_for_media_type("application/json")
    if body is None:
        return False
    try:
        validator = make_validator(body.optimized_schema, case.operation.schema.adapter.jsonschema_validator_cls)
        return validator.is_valid(trimmed)
    except Exception:  # a schema the validator cannot load: no excuse
        return False


@schemathesis.check
def negative_data_rejection_for_mpcrm(ctx, response, case):
    """``negative_data_rejection``, except for a body that only broke a length or pattern rule with
    whitespace the server trims first: JSON Schema cannot say "at most 64 characters once trimmed"."""
    try:
        return negative_data_rejection(ctx, response, case)
    except AcceptedNegativeData:
        if valid_once_trimmed(case):
            return None
        raise
