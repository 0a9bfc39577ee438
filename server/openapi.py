"""The OpenAPI 3.1 document, built from the route table and each method's ``@operation``."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from server.schemas.common import ErrorEnvelope

METHODS = ("get", "post", "put", "patch", "delete")
_PARAM_RE = re.compile(r"\(\?P<(\w+)>[^)]*\)")

_STANDARD_ERRORS = {
    400: "Malformed request",
    401: "Missing, invalid or expired token",
    403: "Not allowed for your role",
    404: "Not found, or not yours",
    413: "Body too large",
    422: "Invalid fields",
    503: "Database or WeChat unavailable",
}


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


def build_openapi(routes: list[tuple], version: str) -> dict:
    ops = route_operations(routes)
    models: list[tuple[type[BaseModel], str]] = [(ErrorEnvelope, "serialization")]
    for _, _, _, spec in ops:
        if spec.body:
            models.append((spec.body, "validation"))
        if spec.response:
            models.append((spec.response, "serialization"))
    unique = list(dict.fromkeys(models))
    refs, schema = models_json_schema(unique, ref_template="#/components/schemas/{model}")
    error_ref = refs[(ErrorEnvelope, "serialization")]
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
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"\{(\w+)\}", path)
        ]
        if spec.query:
            qschema = spec.query.model_json_schema()
            required = set(qschema.get("required", []))
            for name, prop in qschema.get("properties", {}).items():
                params.append({"name": name, "in": "query", "required": name in required, "schema": prop})
        if spec.idempotent:
            params.append({"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 128}})
        if params:
            op["parameters"] = params
        if spec.body:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": refs[(spec.body, "validation")]}}}
        ok: dict[str, Any] = {"description": "OK"}
        if spec.response:
            ok["content"] = {"application/json": {"schema": refs[(spec.response, "serialization")]}}
        op["responses"][str(spec.status)] = ok
        for status, text in {**_STANDARD_ERRORS, **spec.extra_responses}.items():
            if spec.public and status in (401, 403):
                continue
            op["responses"][str(status)] = {"description": text, "content": {"application/json": {"schema": error_ref}}}
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "mpcrm API", "version": version, "description": "The mini-program CRM backend. Errors always use the envelope {error: {code, message, details}}."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schema.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "security": [{"bearer": []}],
    }
