"""Operations: liveness, readiness, metrics, the OpenAPI document and its rendered reference."""

from __future__ import annotations

import asyncio
import os

import swagger_ui
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tornado.web import StaticFileHandler

from handlers.base import ApiHandler, operation
from server.db import ping
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
    @operation("The database answers (503 while it does not)", public=True, response=Status, tags=("ops",))
    async def get(self) -> None:
        try:
            await asyncio.wait_for(ping(self.ctx.db), timeout=2)
        except Exception:  # any failure to reach the database means "not ready"
            self.set_header("Retry-After", "5")
            self.write_json({"error": {"code": "service.unavailable", "message": "database unreachable", "details": []}}, 503)
            return
        self.write_json({"status": "ready"})


class MetricsHandler(ApiHandler):
    @operation("Prometheus metrics", public=True, tags=("ops",))
    async def get(self) -> None:
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
