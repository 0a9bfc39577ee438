"""The OpenAPI 3.1 document, built from the route table and each method's ``@operation``.

Every status an operation can answer is in its ``responses``. Most are derived from what the
declaration says, because the same declaration drives the checks in ``handlers/base.py``:

- every operation: 401 (no, bad or expired token; on public operations a token is optional, but a
  bad one is still refused, and the login endpoints refuse bad credentials), 404, 503;
- non-public operations: 403 (the role is not allowed);
- a JSON body: 400 (malformed JSON), 413 (too large), 415 (not JSON), 422 (invalid fields);
- a query model: 400 (a malformed cursor or parameter) and 422;
- ``idempotent``: the ``Idempotency-Key`` header with the format ``IdempotencyService`` enforces,
  400 (bad key), 409 (same key still running) and 422 (same key, other body);
- a body with ``version`` (``Versioned``): 412 (stale version); with ``versioned=True`` the
  handler insists on it (``expected_version``), so ``version`` is shown as required;
- ``extra_responses``: what only the service knows (409 conflicts, 429 rate limits, …).

Request bodies also say what ``ApiHandler.parse_body`` refuses in any object: keys that start with
``$`` or contain ``.`` (``propertyNames``).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from server.schemas.common import ErrorEnvelope
from server.services.idempotency import KEY_RE

METHODS = ("get", "post", "put", "patch", "delete")
_PARAM_RE = re.compile(r"\(\?P<(\w+)>[^)]*\)")
# ApiHandler.parse_body refuses these keys anywhere in a body (request.operator_key).
_SAFE_KEY = {"pattern": r"^([^$.][^.]*)?$"}
VERSION_MAX = 2**31 - 1

_TEXT = {
    400: "Malformed request (bad JSON, cursor, parameter or Idempotency-Key)",
    401: "Missing, invalid or expired token",
    403: "Not allowed for your role",
    404: "Not found, or not yours",
    409: "Conflict: the same Idempotency-Key is still running",
    412: "Stale version: someone changed it since you read it; nothing was applied",
    413: "Body too large",
    415: "Unsupported media type",
    422: "Invalid fields",
    503: "Database or WeChat unavailable",
}
_PUBLIC_401 = "A token was sent and is invalid (a token is optional here)"


def openapi_path(pattern: str) -> str:
    return _PARAM_RE.sub(lambda m: "{" + m.group(1) + "}", pattern).rstrip("$").replace("\\.", ".")


def route_operations(routes: list[tuple]) -> list[tuple[str, str, Any, Any]]:
    """(path, method, handler class, Operation) for every declared method of every route."""
    found = []
    for route in routes:
        pattern, handler = route[0], route[1]
        for method in METHODS:
            func = handler.__dict__.get(method) or getattr(handler, method, None)
            spec = getattr(func, "operation", None)
            if spec is not None:
                found.append((openapi_path(pattern), method, handler, spec))
    return found


def allowed_methods(handler: type) -> list[str]:
    """The methods of a handler that have an ``@operation`` (the ``Allow`` header of a 405)."""
    return [m.upper() for m in METHODS if getattr(getattr(handler, m, None), "operation", None) is not None]


def _has_version(model: type[BaseModel] | None) -> bool:
    return model is not None and "version" in model.model_fields


def _uploads(spec: Any) -> bool:
    return getattr(spec, "body_limit", "json") in ("upload", "attachment")


def error_statuses(spec: Any, has_path_params: bool) -> dict[int, str]:
    """Every error status the operation can answer, with its description."""
    statuses: dict[int, str] = {401: _PUBLIC_401 if spec.public else _TEXT[401]}
    if not spec.public:
        statuses[403] = _TEXT[403]
    statuses[404] = _TEXT[404]
    if spec.body or _uploads(spec):
        statuses.update({400: _TEXT[400], 413: _TEXT[413], 415: _TEXT[415], 422: _TEXT[422]})
    if spec.query:
        statuses.update({400: _TEXT[400], 422: _TEXT[422]})
    if spec.idempotent:
        statuses.update({400: _TEXT[400], 409: _TEXT[409], 422: _TEXT[422]})
    if _has_version(spec.body):
        statuses[412] = _TEXT[412]
    if getattr(spec, "versioned", False):
        statuses[422] = _TEXT[422]
    statuses[503] = _TEXT[503]
    statuses.update(spec.extra_responses)
    return dict(sorted(statuses.items()))


def _walk_objects(node: Any):
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node or "additionalProperties" in node:
            yield node
        for value in node.values():
            yield from _walk_objects(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_objects(item)


def _reachable(components: dict[str, dict], roots: set[str]) -> set[str]:
    """The request-body components and every component they refer to, however deep."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in components:
            continue
        seen.add(name)
        todo.extend(re.findall(r"#/components/schemas/([\w.\-\[\]]+)", repr(components[name])))
    return seen


JSON_VALUE_REF = {"$ref": "#/components/schemas/JsonValue"}
# Free-form JSON as parse_body takes it: any value, but no object inside it, however deep, may have
# a key that starts with "$" or contains ".".
JSON_VALUE = {
    "description": "Any JSON value; no object inside it may have a key that starts with $ or contains a dot",
    "anyOf": [
        {"type": ["null", "boolean", "number", "string"]},
        {"type": "array", "items": JSON_VALUE_REF},
        {"type": "object", "propertyNames": _SAFE_KEY, "additionalProperties": JSON_VALUE_REF},
    ],
}


def _refuse_operator_keys(schema: dict) -> None:
    """Objects that take any key name the keys parse_body refuses; their free-form values are
    ``JsonValue`` (the same rule all the way down)."""
    for obj in list(_walk_objects(schema)):
        extra = obj.get("additionalProperties", True if "properties" not in obj else False)
        if extra is False:
            continue
        if "propertyNames" not in obj:
            obj["propertyNames"] = dict(_SAFE_KEY)
        if extra is True or extra == {}:
            obj["additionalProperties"] = dict(JSON_VALUE_REF)


def _require_version(schema: dict) -> None:
    props = schema.setdefault("properties", {})
    description = (props.get("version") or {}).get("description", "The version you last read")
    props["version"] = {"type": "integer", "minimum": 1, "maximum": VERSION_MAX, "description": description}
    if "version" not in schema.setdefault("required", []):
        schema["required"].append("version")


# POST /uploads: one file in the multipart field `file`, or the file itself as the body.
ATTACHMENT_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "application/pdf")


def _attachment_body() -> dict:
    binary = {"type": "string", "format": "binary"}
    content: dict[str, Any] = {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": {**binary, "description": "One image (JPEG, PNG, WebP, GIF) or PDF; its type is read from its bytes"}},
            },
        },
    }
    content.update({media: {"schema": binary} for media in (*ATTACHMENT_TYPES, "application/octet-stream")})
    return {"required": True, "content": content}


def _upload_body(spec: Any = None) -> dict:
    if getattr(spec, "body_limit", "upload") == "attachment":
        return _attachment_body()
    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "One CSV or XLSX file"},
                        "team_id": {"type": "string", "description": "Admins: the team the leads go to"},
                    },
                },
            },
        },
    }


def build_openapi(routes: list[tuple], version: str) -> dict:
    ops = route_operations(routes)
    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [(ErrorEnvelope, "serialization")]
    for _, _, _, spec in ops:
        if spec.body:
            models.append((spec.body, "validation"))
        if spec.response:
            models.append((spec.response, "serialization"))
    unique = list(dict.fromkeys(models))
    refs, schema = models_json_schema(unique, ref_template="#/components/schemas/{model}")
    components: dict[str, dict] = schema.get("$defs", {})
    error_ref = refs[(ErrorEnvelope, "serialization")]
    body_names = {refs[(spec.body, "validation")]["$ref"].rsplit("/", 1)[1] for _, _, _, spec in ops if spec.body}
    for name in _reachable(components, body_names):
        _refuse_operator_keys(components[name])
    components["JsonValue"] = JSON_VALUE
    paths: dict[str, dict] = {}
    for path, method, handler, spec in ops:
        op: dict[str, Any] = {
            "summary": spec.summary,
            "operationId": f"{handler.__name__}.{method}",
            "tags": list(spec.tags),
            "responses": {},
        }
        if spec.public:
            op["security"] = []
        else:
            op["description"] = "Roles: " + ", ".join(spec.roles)
        path_params = re.findall(r"\{(\w+)\}", path)
        params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in path_params]
        if spec.query:
            qschema = spec.query.model_json_schema()
            required = set(qschema.get("required", []))
            for name, prop in qschema.get("properties", {}).items():
                params.append({"name": name, "in": "query", "required": name in required, "schema": prop})
        if spec.idempotent:
            params.append({
                "name": "Idempotency-Key", "in": "header", "required": False,
                "description": "Same key and body: the first response again and no second write; same key, other body: 422; while the first is still running: 409. Kept 48 hours.",
                "schema": {"type": "string", "pattern": KEY_RE.pattern, "minLength": 8, "maxLength": 128},
            })
        if params:
            op["parameters"] = params
        if spec.body:
            body_ref = refs[(spec.body, "validation")]
            if getattr(spec, "versioned", False):
                _require_version(components[body_ref["$ref"].rsplit("/", 1)[1]])
                op["description"] = op.get("description", "") + ". Send `version` (the one you last read); an `If-Match: \"<version>\"` header may stand in for it."
            # parse_body reads a missing body as {}: it is required only when some field is.
            body_required = bool(components[body_ref["$ref"].rsplit("/", 1)[1]].get("required"))
            op["requestBody"] = {"required": body_required, "content": {"application/json": {"schema": body_ref}}}
        elif _uploads(spec):
            op["requestBody"] = _upload_body(spec)
        ok: dict[str, Any] = {"description": "OK"}
        if spec.response:
            ok["content"] = {"application/json": {"schema": refs[(spec.response, "serialization")]}}
        op["responses"][str(spec.status)] = ok
        for status, text in error_statuses(spec, bool(path_params)).items():
            op["responses"][str(status)] = {"description": text, "content": {"application/json": {"schema": error_ref}}}
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "mpcrm API", "version": version, "description": "The mini-program CRM backend. Errors always use the envelope {error: {code, message, details}}."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "security": [{"bearer": []}],
    }
