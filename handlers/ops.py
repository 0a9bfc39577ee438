"""Operations: liveness, readiness, metrics, the OpenAPI document and its rendered reference."""

from __future__ import annotations

import asyncio
import hmac
import os

import swagger_ui
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tornado.web import StaticFileHandler

from config.settings import Settings
from handlers.base import ApiHandler, operation
from server.errors import ApiError, Unauthorized, detail
from server.schemas.common import OutModel

DOCS_STATIC = os.path.join(os.path.dirname(swagger_ui.__file__), "static")

_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mpcrm API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true});</script>
</body></html>"""


class Status(OutModel):
    status: str


class HealthHandler(ApiHandler):
    @operation("The process is alive", public=True, response=Status, tags=("ops",))
    async def get(self) -> None:
        self.write_json({"status": "ok"})


class ReadyHandler(ApiHandler):
    @operation("The database answers (503 while it does not, or while `run` restarts its embedded database)", public=True, response=Status, tags=("ops",))
    async def get(self) -> None:
        # Set by `run` when it supervises the embedded database: "running", "restarting" or "failed".
        database_status = self.application.settings.get("database_status")
        state = database_status() if database_status else "running"
        if state == "running":
            try:
                await asyncio.wait_for(self.ctx.database.ping(), timeout=2)
            except Exception:  # any failure to reach the database means "not ready"
                state = database_status() if database_status else "running"
                state = "unreachable" if state == "running" else state
        if state != "running":
            raise ApiError("service.unavailable", 503, headers={"Retry-After": "5"}, details=[detail("database", state, text="database_state", state=state)])
        self.write_json({"status": "ready"})


def metrics_access(settings: Settings, authorization: str) -> str:
    """``ok``, ``off`` (production without ``MPCRM_METRICS_TOKEN``: 404) or ``denied`` (a token is
    set and the request does not carry it as ``Authorization: Bearer …``: 401)."""
    expected = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    if expected is None:
        return "off" if settings.env == "production" else "ok"
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        return "denied"
    return "ok"


class MetricsHandler(ApiHandler):
    @operation(
        "Prometheus metrics: `Authorization: Bearer <MPCRM_METRICS_TOKEN>` when that is set; off in production without it",
        public=True, auth="none", tags=("ops",), extra_responses={401: "Missing or wrong metrics token", 404: "Off (production without a metrics token)"},
    )
    async def get(self) -> None:
        access = metrics_access(self.ctx.settings, self.request.headers.get("Authorization", ""))
        if access == "off":
            raise ApiError("request.not_found", 404)
        if access == "denied":
            raise Unauthorized("auth.required")
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(self.application.settings["metrics"].registry))


class OpenApiHandler(ApiHandler):
    @operation("This API's OpenAPI 3.1 document", public=True, tags=("ops",))
    async def get(self) -> None:
        self.write_json(self.application.settings["openapi"])


class DocsHandler(ApiHandler):
    @operation("The rendered API reference (no internet needed)", public=True, tags=("ops",))
    async def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(_DOCS_PAGE)


routes = [
    (r"/healthz", HealthHandler),
    (r"/readyz", ReadyHandler),
    (r"/metrics", MetricsHandler),
    (r"/openapi.json", OpenApiHandler),
    (r"/docs", DocsHandler),
]

static_routes = [
    (r"/docs/static/(.*)", StaticFileHandler, {"path": DOCS_STATIC}),
]
