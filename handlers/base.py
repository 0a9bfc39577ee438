"""The one base handler: request ids, authentication (deny by default), input parsing with schemas,
JSON output, and a single error envelope for everything that goes wrong.

Each handler method is declared with ``@operation(...)``: who may call it and which models describe
its query, body and response. ``prepare`` enforces the access rule and ``server/openapi.py`` turns
the same declarations into the OpenAPI document, so the docs cannot drift from what is enforced.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pymongo.errors import ConnectionFailure, ExecutionTimeout, NetworkTimeout, PyMongoError, ServerSelectionTimeoutError
from tornado.web import HTTPError, RequestHandler

from server.actor import STAFF_ROLES, Actor
from server.context import AppContext
from server.errors import ApiError, Forbidden, Unauthorized
from server.services.idempotency import request_fingerprint

log = logging.getLogger("mpcrm.api")
M = TypeVar("M", bound=BaseModel)

ALL_ROLES = ("customer",) + STAFF_ROLES
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
_DB_DOWN = (ConnectionFailure, ServerSelectionTimeoutError, NetworkTimeout, ExecutionTimeout)


@dataclass(frozen=True)
class Operation:
    """What one handler method is: access rule and schemas (read by prepare and by OpenAPI)."""

    summary: str
    roles: tuple[str, ...] = STAFF_ROLES
    public: bool = False  # no token needed (a valid one is still read, e.g. a customer's)
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    tags: tuple[str, ...] = ()
    idempotent: bool = False  # accepts an Idempotency-Key header
    # "user": load the user on every request (lockout at once). "token": verify the token only; the
    # service's first write must re-check the user (see PoolService.claim) — saves a command.
    auth: str = "user"
    extra_responses: dict[int, str] = field(default_factory=dict)


def operation(summary: str, **kwargs: Any) -> Callable[[Callable], Callable]:
    spec = Operation(summary=summary, **kwargs)

    def mark(method: Callable) -> Callable:
        method.operation = spec
        return method

    return mark


def _has_operator_key(value: Any, path: str = "") -> str | None:
    """The path of the first key that starts with ``$`` or contains ``.``, anywhere in the body."""
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if not isinstance(key, str) or key.startswith("$") or "." in key:
                return here
            found = _has_operator_key(item, here)
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _has_operator_key(item, f"{path}[{index}]")
            if found:
                return found
    return None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def validation_details(exc: ValidationError) -> list[dict]:
    return [
        {
            "field": ".".join(str(p) for p in err["loc"]) or None,
            "code": err["type"],
            "message": err["msg"],
        }
        for err in exc.errors(include_url=False, include_input=False)
    ]


def pick_language(header: str | None, default: str) -> str:
    """``Accept-Language`` → ``zh-CN`` or ``en``, honouring q-values."""
    best, best_q = default, -1.0
    for part in (header or "").split(","):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        lang = "en" if tag.lower().startswith("en") else "zh-CN" if tag.lower().startswith("zh") else None
        if lang and q > best_q:
            best, best_q = lang, q
    return best


class ApiHandler(RequestHandler):
    actor: Actor | None = None
    user_doc: dict | None = None

    # ------------------------------------------------------------ context
    @property
    def ctx(self) -> AppContext:
        return self.application.settings["ctx"]

    @property
    def language(self) -> str:
        return pick_language(self.request.headers.get("Accept-Language"), self.ctx.settings.default_language)

    def current_operation(self) -> Operation | None:
        method = getattr(self, self.request.method.lower(), None)
        return getattr(method, "operation", None)

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    # ------------------------------------------------------------ request lifecycle
    async def prepare(self) -> None:
        incoming = self.request.headers.get("X-Request-Id", "")
        self.request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        self.set_header("X-Request-Id", self.request_id)
        self._started = time.monotonic()
        if self.request.method not in self.SUPPORTED_METHODS:
            raise HTTPError(405)
        spec = self.current_operation()
        if spec is None:
            raise HTTPError(405)
        self.check_body_size()
        await self._authenticate(spec)

    def check_body_size(self) -> None:
        if len(self.request.body or b"") > self.ctx.settings.json_body_limit:
            raise ApiError("request.too_large", 413, params={"limit": self.ctx.settings.json_body_limit})

    async def _authenticate(self, spec: Operation) -> None:
        header = self.request.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else None
        if header and token is None:
            raise Unauthorized("auth.invalid_token")
        if spec.public:
            # Anyone may call these; a token only attributes the call (e.g. to a customer), so it
            # is verified cryptographically without a database read.
            if token:
                self.actor = self.ctx.auth.actor_from_token(token)
            return
        if token and spec.auth == "token":
            self.actor = self.ctx.auth.actor_from_token(token)
        elif token:
            self.actor, self.user_doc = await self.ctx.auth.authenticate(token)
        if self.actor is None:
            raise Unauthorized("auth.required")
        if self.actor.role not in spec.roles:
            raise Forbidden("auth.forbidden")

    def require_actor(self) -> Actor:
        if self.actor is None:
            raise Unauthorized("auth.required")
        return self.actor

    # ------------------------------------------------------------ input
    def parse_body(self, model: type[M]) -> M:
        content_type = self.request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
        if content_type not in ("application/json", ""):
            raise ApiError("request.unsupported_media_type", 415)
        raw = self.request.body or b"{}"
        try:
            data = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError):
            raise ApiError("request.malformed_json", 400) from None
        if not isinstance(data, dict):
            raise ApiError("request.not_object", 400)
        bad_key = _has_operator_key(data)
        if bad_key:
            raise ApiError("request.operator_key", 422, details=[{"field": bad_key, "code": "operator_key", "message": "keys may not start with $ or contain ."}])
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            raise ApiError("request.invalid", 422, details=validation_details(exc)) from None

    def parse_query(self, model: type[M]) -> M:
        values: dict[str, Any] = {}
        for key, raw_values in self.request.query_arguments.items():
            try:
                decoded = [v.decode("utf-8") for v in raw_values]
            except UnicodeDecodeError:
                raise ApiError("request.invalid", 400, details=[{"field": key, "code": "encoding", "message": "not UTF-8"}]) from None
            model_field = model.model_fields.get(key)
            wants_list = model_field is not None and (
                get_origin(model_field.annotation) is list
                or any(get_origin(a) is list for a in get_args(model_field.annotation))
            )
            if wants_list:
                values[key] = decoded
            elif len(decoded) > 1:
                raise ApiError("request.invalid", 422, details=[{"field": key, "code": "repeated", "message": "give this parameter once"}])
            else:
                values[key] = decoded[0]
        try:
            return model.model_validate(values)
        except ValidationError as exc:
            raise ApiError("request.invalid", 422, details=validation_details(exc)) from None

    def expected_version(self, body_version: int | None) -> int:
        """The version the client last read: the body field, or the ``If-Match`` header."""
        if body_version is not None:
            return body_version
        header = self.request.headers.get("If-Match", "").strip()
        header = header[2:] if header.startswith("W/") else header
        header = header.strip('"')
        if header.isdigit() and 0 < int(header) < 2**31:
            return int(header)
        raise ApiError("request.version_required", 422, details=[{"field": "version", "code": "missing", "message": "send version or If-Match"}])

    def idempotency_key(self) -> str | None:
        key = self.request.headers.get("Idempotency-Key")
        return key.strip() if key is not None else None

    def request_fingerprint(self) -> str:
        return request_fingerprint(self.request.method, self.request.path, self.request.body or b"")

    def client_ip(self) -> str:
        """The peer address; ``X-Forwarded-For`` counts only when the peer is a trusted proxy."""
        peer = self.request.remote_ip or ""
        trusted = self.ctx.settings.trusted_proxies
        forwarded = self.request.headers.get("X-Forwarded-For")
        if forwarded and peer in trusted:
            hops = [h.strip() for h in forwarded.split(",") if h.strip()]
            for hop in reversed(hops):  # nearest first; the first untrusted hop is the client
                if hop not in trusted:
                    return hop
        return peer

    # ------------------------------------------------------------ output
    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data, ensure_ascii=False, separators=(",", ":")))

    def write_model(self, model: type[BaseModel], data: Any, status: int = 200) -> None:
        self.write_json(model.model_validate(data).model_dump(mode="json"), status)

    def write_page(self, model: type[BaseModel], page: Any, convert: Callable[[dict], Any] | None = None) -> None:
        """A list answer: ``{"items": [...], "next_cursor": ...}`` from a ``server.paging.Page``."""
        items = [convert(d) for d in page.items] if convert else page.items
        self.write_model(model, {"items": items, "next_cursor": page.next_cursor})

    def no_content(self) -> None:
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            error = exc
        elif isinstance(exc, _DB_DOWN) or (isinstance(exc, PyMongoError) and exc.timeout):
            error = ApiError("service.unavailable", 503, headers={"Retry-After": "5"})
        elif isinstance(exc, HTTPError) and exc.status_code == 405:
            error = ApiError("request.method_not_allowed", 405)
        elif isinstance(exc, HTTPError) and exc.status_code == 404:
            error = ApiError("request.not_found", 404)
        elif isinstance(exc, HTTPError) and exc.status_code < 500:
            error = ApiError("request.invalid", exc.status_code)
        else:
            error = ApiError("internal", 500)
        self.set_status(error.status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        if not getattr(self, "request_id", None):  # refused before prepare (e.g. a method Tornado rejects)
            incoming = self.request.headers.get("X-Request-Id", "")
            self.request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        self.set_header("X-Request-Id", self.request_id)
        for name, value in error.headers.items():
            self.set_header(name, value)
        envelope = {"error": {"code": error.code, "message": error.message(self.language), "details": error.details}}
        self.finish(json.dumps(envelope, ensure_ascii=False))

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, ApiError) or (isinstance(value, HTTPError) and value.status_code < 500):
            return
        if isinstance(value, _DB_DOWN) or (isinstance(value, PyMongoError) and value.timeout):
            log.warning("database unavailable: %s", type(value).__name__, extra={"request_id": getattr(self, "request_id", "")})
            return
        log.error("unhandled error", exc_info=(typ, value, tb), extra={"request_id": getattr(self, "request_id", "")})


class NotFoundHandler(ApiHandler):
    """Every unknown path: a 404 in the envelope, for every method."""

    async def prepare(self) -> None:
        incoming = self.request.headers.get("X-Request-Id", "")
        self.request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        raise ApiError("request.not_found", 404)
