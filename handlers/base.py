"""The one base handler: request ids, authentication (deny by default), input parsing with schemas,
JSON output, and a single error envelope for everything that goes wrong.

Each handler method is declared with ``@operation(...)``: who may call it and which models describe
its query, body and response. ``prepare`` enforces the access rule and ``server/openapi.py`` turns
the same declarations into the OpenAPI document, so the docs cannot drift from what is enforced.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pymongo.errors import ConnectionFailure, ExecutionTimeout, NetworkTimeout, PyMongoError, ServerSelectionTimeoutError
from tornado.http1connection import HTTP1Connection
from tornado.httputil import HTTPServerRequest
from tornado.web import HTTPError, RequestHandler, stream_request_body

from server.actor import STAFF_ROLES, Actor
from server.context import AppContext
from server.errors import ApiError, Forbidden, Unauthorized, detail, validation_details
from server.openapi import allowed_methods
from server.services.idempotency import IdempotencyService, request_fingerprint

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
    # "none": no bearer token is read at all; the operation checks its own credential (/metrics).
    auth: str = "user"
    extra_responses: dict[int, str] = field(default_factory=dict)
    # The handler insists on the version the client last read (``expected_version``): OpenAPI then
    # shows the body's ``version`` as required.
    versioned: bool = False
    # Which cap applies to the body (see BODY_LIMITS): "json" for every endpoint but the upload.
    body_limit: str = "json"


# body_limit → (the setting that caps it, drain factor). A body declared or streamed past the cap
# times the drain factor is answered with 413 at once (the connection then closes); one between the
# cap and that is read to its end and discarded first, so a client that sends a whole file before
# reading (browsers, simple HTTP clients) still gets the envelope rather than a reset connection.
BODY_LIMITS = {"json": ("json_body_limit", 1), "upload": ("upload_body_limit", 4), "attachment": ("attachment_body_limit", 2)}


def operation(summary: str, **kwargs: Any) -> Callable[[Callable], Callable]:
    spec = Operation(summary=summary, **kwargs)

    if spec.body_limit not in BODY_LIMITS:
        raise ValueError(f"body_limit must be one of {sorted(BODY_LIMITS)}")

    def mark(method: Callable) -> Callable:
        @functools.wraps(method)
        def run(self, *args: Any, **kwargs: Any) -> Any:
            # The body has been streamed in by now (see ApiHandler.data_received). The method's own
            # coroutine is handed back for Tornado to await (no second coroutine around it).
            complete = getattr(self, "complete_body", None)
            if complete is not None:
                complete()
            return method(self, *args, **kwargs)

        run.__dict__["operation"] = spec  # read by current_operation() and server/openapi.py
        return run

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


# Request bodies nest a few levels (a form's fields' options are 4); deeper is refused before any
# parser recurses into it (json.loads raises RecursionError at about 1,000 levels).
JSON_MAX_DEPTH = 32
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_too_deep(raw: bytes, limit: int = JSON_MAX_DEPTH) -> bool:
    """Whether arrays and objects in ``raw`` nest deeper than ``limit`` (brackets inside strings do
    not count). A scan of the bytes at C speed: strings and everything but brackets are dropped,
    then each pass removes the innermost pairs; only a body still holding brackets after ``limit``
    passes (too deep, or malformed) is counted bracket by bracket."""
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    rest = brackets
    for _ in range(limit):
        shorter = rest.replace(b"[]", b"").replace(b"{}", b"")
        if shorter == rest:
            break
        rest = shorter
    if not rest:
        return False
    depth = 0
    for byte in brackets:
        depth += 1 if byte in b"[{" else -1
        if depth > limit:
            return True
    return False


# Request ids: 32 hex digits, a random half drawn once per process (again in a forked child) and a
# counter, so ids stay unique across instances and processes without a system call per request
# (``uuid4`` reads the kernel's random source every time). They only correlate log lines.
_request_id_prefix = ""
_request_id_counter = itertools.count(1)


def _draw_request_id_prefix() -> None:
    global _request_id_prefix, _request_id_counter
    _request_id_prefix = secrets.token_hex(8)
    _request_id_counter = itertools.count(1)


_draw_request_id_prefix()
os.register_at_fork(after_in_child=_draw_request_id_prefix)


def request_id_for(request: HTTPServerRequest) -> str:
    """The caller's ``X-Request-Id`` when it is sane, else a new id."""
    incoming = request.headers.get("X-Request-Id", "")
    if _REQUEST_ID_RE.match(incoming):
        return incoming
    return f"{_request_id_prefix}{next(_request_id_counter) & 0xFFFFFFFFFFFFFFFF:016x}"


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


@stream_request_body
class ApiHandler(RequestHandler):
    """Bodies are streamed (``data_received``), never buffered by the server beyond the operation's
    own cap: ``prepare`` refuses an over-size ``Content-Length`` before a byte of the body is read,
    and a chunked body is refused once it passes the cap."""

    _caller: Actor | None = None
    user_doc: dict | None = None  # the caller's user document, when it was read for this request
    _token: str | None = None
    _body_limit = 0
    _body_ceiling = 0
    _received = 0
    _chunks: list[bytes]  # set by limit_body, which every prepare runs first
    _discard_body = False
    _refusal: BaseException | None = None

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

    def compute_etag(self) -> str | None:
        """None: API answers are ``no-store``, so Tornado's ETag (a SHA-1 of every GET's body) would
        only cost time, and ``If-None-Match`` could turn a lead into an empty 304."""
        return None

    # ------------------------------------------------------------ request lifecycle
    async def prepare(self) -> None:
        self.request_id = request_id_for(self.request)
        self.set_header("X-Request-Id", self.request_id)
        self._started = time.monotonic()
        if self.request.method not in self.SUPPORTED_METHODS:
            raise HTTPError(405)
        spec = self.current_operation()
        if spec is None:
            raise HTTPError(405)
        if self._body_expected():
            self.limit_body(spec.body_limit)
        else:
            self._chunks = []  # no Content-Length (or 0) and not chunked: there is no body to stream
        try:
            await self._authenticate(spec)
        except Exception as exc:
            # A refused caller's body is read and discarded before the answer, up to the JSON cap:
            # closing a connection with unread data resets it, and the client could lose the answer.
            small = min(self._body_ceiling, self.ctx.settings.json_body_limit)
            if not self._body_expected() or (self._declared_length() or 0) > small:
                raise
            self._refusal = exc
            self._discard_body = True
            self._body_limit = self._body_ceiling = small

    # ------------------------------------------------------------ body size
    def limit_body(self, kind: str = "json") -> None:
        """Runs in prepare, before any of the body is read: the cap from ``Content-Length``, and the
        connection's own limit so that what streams in is counted by ``data_received``."""
        setting, drain = BODY_LIMITS[kind]
        self._body_limit = getattr(self.ctx.settings, setting)
        self._body_ceiling = self._body_limit * drain
        self._received = 0
        self._chunks = []
        declared = self._declared_length()
        connection = cast(HTTP1Connection, self.request.connection)  # the HTTP/1.1 server's connection
        if declared is not None and declared > self._body_ceiling:
            # Let Tornado skip the rest quietly (it would append a bare 400) until the connection
            # closes right after this answer.
            connection.set_max_body_size(declared)
            raise self._too_large()
        # A chunked body is counted by data_received; Tornado's own check stays as a backstop for
        # a single chunk header that claims more than twice the ceiling.
        connection.set_max_body_size(self._body_ceiling if declared is not None else 2 * self._body_ceiling)

    def _declared_length(self) -> int | None:
        raw = self.request.headers.get("Content-Length")
        if raw is None:
            return None
        first = raw.split(",")[0].strip()
        return int(first) if first.isdigit() else None  # anything else: Tornado answers 400

    def _body_expected(self) -> bool:
        declared = self._declared_length()
        chunked = "chunked" in self.request.headers.get("Transfer-Encoding", "").lower()
        return chunked or bool(declared)

    def _too_large(self) -> ApiError:
        return ApiError("request.too_large", 413, params={"limit": self._body_limit})

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return
        self._received += len(chunk)
        if self._received > self._body_limit:
            self._chunks = []  # too large: keep nothing
            if self._received > self._body_ceiling:
                error = self._refusal or self._too_large()
                self.send_error(getattr(error, "status", 500), exc_info=(type(error), error, None))
            return
        if not self._discard_body:
            self._chunks.append(chunk)

    def complete_body(self) -> None:
        """Before the operation runs: a refusal found while the body streamed in, or the body."""
        if self._refusal is not None:
            raise self._refusal
        if self._received > self._body_limit:
            raise self._too_large()
        self.request.body = b"".join(self._chunks or ())
        self._chunks = []

    async def _authenticate(self, spec: Operation) -> None:
        header = self.request.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else None
        if spec.auth == "none":
            return  # the operation checks its own credential (GET /metrics); no token is read
        if header and token is None:
            raise Unauthorized("auth.invalid_token")
        if spec.public:
            # Anyone may call these; a token only attributes the call (e.g. to a customer). A forged
            # or malformed token is 401; a genuine one whose user is deactivated, gone or signed out
            # (token_version) counts as no token (one user read, only when a token is sent).
            if token:
                self._caller, self.user_doc = await self.ctx.auth.public_caller(token)
            return
        self._token = token
        if token and spec.auth == "token":
            self._caller = self.ctx.auth.actor_from_token(token)
        elif token:
            self._caller, self.user_doc = await self.ctx.auth.authenticate(token)
        if self._caller is None:
            raise Unauthorized("auth.required")
        if self._caller.role not in spec.roles:
            raise Forbidden("auth.forbidden")

    async def current_user_doc(self) -> dict:
        """The caller's user document as stored now (``/me``, sync's scope exits): the one read
        for this request, or a read now when authentication used what this instance read of the
        user within the last second; checked again, like every authentication."""
        if self.user_doc is None:
            self._caller, self.user_doc = await self.ctx.auth.authenticate(self._token or "", fresh=True)
            if self.user_doc is None:  # never: a fresh authentication always reads the user
                raise Unauthorized("auth.required")
        return self.user_doc

    @property
    def caller(self) -> Actor | None:
        """Who is calling, if anyone: None on a public operation called without a token (or with
        one whose user is gone, deactivated or signed out), and on ``auth="none"`` operations."""
        return self._caller

    @property
    def actor(self) -> Actor:
        """The authenticated caller. ``prepare`` refuses every non-public operation without one
        (401), so only a public operation can find none here: it is refused the same way."""
        if self._caller is None:
            raise Unauthorized("auth.required")
        return self._caller

    # ------------------------------------------------------------ input
    def parse_body(self, model: type[M]) -> M:
        content_type = self.request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
        if content_type not in ("application/json", ""):
            raise ApiError("request.unsupported_media_type", 415)
        raw = self.request.body or b"{}"
        if json_too_deep(raw):
            raise ApiError("request.too_deep", 400, params={"limit": JSON_MAX_DEPTH})
        try:
            data = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError):
            raise ApiError("request.malformed_json", 400) from None
        if not isinstance(data, dict):
            raise ApiError("request.not_object", 400)
        bad_key = _has_operator_key(data)
        if bad_key:
            raise ApiError("request.operator_key", 422, details=[detail(bad_key, "operator_key")])
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
                raise ApiError("request.invalid", 400, details=[detail(key, "encoding")]) from None
            model_field = model.model_fields.get(key)
            wants_list = model_field is not None and (
                get_origin(model_field.annotation) is list
                or any(get_origin(a) is list for a in get_args(model_field.annotation))
            )
            if wants_list:
                values[key] = decoded
            elif len(decoded) > 1:
                raise ApiError("request.invalid", 422, details=[detail(key, "repeated")])
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
        raise ApiError("request.version_required", 422, details=[detail("version", "missing", text="version_missing")])

    def idempotency_key(self) -> str | None:
        """The ``Idempotency-Key`` header, checked against the documented format (400 otherwise).
        A header that is present but empty is a malformed key, not "no key"."""
        key = self.request.headers.get("Idempotency-Key")
        return IdempotencyService.check_key(key.strip()) if key is not None else None

    def request_fingerprint(self) -> str:
        return request_fingerprint(self.request.method, self.request.path, self.request.body or b"")

    async def idempotent(self, create, load, *, resource_id: str | None = None):
        """A creating POST under the caller's ``Idempotency-Key``, if one was sent, scoped to the
        caller: ``IdempotencyService.run`` (create once; a retry gets what the first one made)."""
        return await self.ctx.idempotency.run(
            f"user:{self.actor.id}", self.idempotency_key(), self.request_fingerprint(), create, load, resource_id=resource_id,
        )

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
        # The caller's language reaches LocalizedStr fields (texts stored in both languages).
        # ``model_dump_json`` is what ``write_json(model_dump(mode="json"))`` writes (compact, UTF-8,
        # same keys and values), in one pass instead of three.
        self.set_status(status)
        self.finish(model.model_validate(data, context={"language": self.language}).model_dump_json())

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
            error = ApiError("request.method_not_allowed", 405, headers={"Allow": ", ".join(allowed_methods(type(self)))})
        elif isinstance(exc, HTTPError) and exc.status_code == 404:
            error = ApiError("request.not_found", 404)
        elif isinstance(exc, HTTPError) and exc.status_code < 500:
            error = ApiError("request.invalid", exc.status_code)
        else:
            error = ApiError("internal", 500)
        self.set_status(error.status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        if not getattr(self, "request_id", None):  # refused before prepare (e.g. a method Tornado rejects)
            self.request_id = request_id_for(self.request)
        self.set_header("X-Request-Id", self.request_id)
        for name, value in error.headers.items():
            self.set_header(name, value)
        envelope = {"error": {"code": error.code, "message": error.message(self.language), "details": error.localized_details(self.language)}}
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
        self.request_id = request_id_for(self.request)
        self.limit_body("json")  # an unknown path is no way around the cap
        self._discard_body = True
        if not self._body_expected():
            raise ApiError("request.not_found", 404)

    async def _not_found(self, *args: Any, **kwargs: Any) -> None:
        """The answer once a body sent here has been read (and discarded)."""
        if self._received > self._body_limit:
            raise self._too_large()
        raise ApiError("request.not_found", 404)

    get = post = put = patch = delete = head = options = _not_found
