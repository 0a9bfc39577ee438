"""``make_app(ctx)``: the Tornado application and its route table, in one readable list."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import tornado.web
from prometheus_client import CollectorRegistry, Counter, Histogram

from handlers import admin, allocation, auth, forms, imports, leads, notifications, ops, sync
from handlers import console, contracts
from handlers import reports
from handlers import surveys
from handlers import uploads
from handlers import tasks as task_handlers
from handlers import tickets
from handlers import handover as handover_handlers
from handlers.base import NotFoundHandler
from server.context import AppContext
from server.openapi import build_openapi

VERSION = "0.1.0"
access_log = logging.getLogger("mpcrm.access")

# The order reads top to bottom like the endpoint tables in docs/api.md.
API_ROUTES: list[tuple] = [
    *ops.routes,
    *auth.routes,
    *handover_handlers.routes,  # before admin: /users/{id}/handover is not a user id
    *admin.routes,
    *allocation.routes,
    *forms.routes,
    *imports.routes,  # before leads: /leads/import and /leads/export are not lead ids
    *leads.routes,
    *task_handlers.routes,
    *notifications.routes,
    *contracts.routes,
    *tickets.routes,
    *sync.routes,
    *reports.routes,
    *surveys.routes,
    *uploads.routes,
]


@dataclass
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    # The labelled children, looked up once per (method, handler, status) and per handler rather
    # than through ``.labels()`` on every request.
    _counted: dict[tuple[str, str, int], Any] = field(default_factory=dict)
    _timed: dict[str, Any] = field(default_factory=dict)

    def observe(self, method: str, handler: str, status: int, seconds: float) -> None:
        counter = self._counted.get((method, handler, status))
        if counter is None:
            counter = self._counted[(method, handler, status)] = self.requests.labels(method, handler, str(status))
        counter.inc()
        timer = self._timed.get(handler)
        if timer is None:
            timer = self._timed[handler] = self.latency.labels(handler)
        timer.observe(seconds)


def make_metrics() -> Metrics:
    registry = CollectorRegistry()
    return Metrics(
        registry=registry,
        requests=Counter("mpcrm_http_requests", "HTTP requests", ["method", "handler", "status"], registry=registry),
        latency=Histogram("mpcrm_http_request_seconds", "Request latency", ["handler"], registry=registry),
    )


METRIC_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


def log_request(handler: tornado.web.RequestHandler) -> None:
    """One JSON line per request: id, method, path (never the query), status, ms, user."""
    elapsed = handler.request.request_time()
    status = handler.get_status()
    name = type(handler).__name__
    metrics: Metrics = handler.application.settings["metrics"]
    # A label per method a client makes up would grow the series without bound: the standard ones, else OTHER.
    method = handler.request.method if handler.request.method in METRIC_METHODS else "OTHER"
    metrics.observe(method, name, status, elapsed)
    actor = getattr(handler, "caller", None)
    level = logging.ERROR if status >= 500 else logging.INFO
    access_log.log(
        level,
        "request",
        extra={
            "request_id": getattr(handler, "request_id", None),
            "method": handler.request.method,
            "path": handler.request.path,
            "status": status,
            "ms": round(elapsed * 1000, 1),
            "user_id": actor.id if actor else None,
        },
    )


def server_options(settings) -> dict:
    """``HTTPServer`` options. Every API handler streams its body and sets its own cap in
    ``prepare`` (``handlers/base.py``), so the server-wide ``max_body_size`` is only the default: the
    largest body any endpoint accepts (the upload). The read buffer stays small (bodies arrive in
    64 KiB pieces; headers are at most 64 KiB), request bodies are never decompressed, and a body
    that trickles in for longer than ``body_timeout`` is dropped."""
    return {
        "max_body_size": settings.upload_body_limit,
        "max_buffer_size": 1024 * 1024,
        "body_timeout": 300.0,
        "idle_connection_timeout": 120.0,
        "decompress_request": False,
        "xheaders": False,
    }


class PlainServerHeader(tornado.web.OutputTransform):
    """Every response, from every handler (static files and errors too), says ``Server: mpcrm``:
    Tornado's own ``TornadoServer/6.x`` would tell an attacker which version's bugs to try."""

    def transform_first_chunk(self, status_code, headers, chunk, finishing):
        headers["Server"] = "mpcrm"
        return super().transform_first_chunk(status_code, headers, chunk, finishing)


def make_app(ctx: AppContext) -> tornado.web.Application:
    app = tornado.web.Application(
        [*API_ROUTES, *ops.static_routes, *console.static_routes],
        ctx=ctx,
        metrics=make_metrics(),
        openapi=build_openapi(API_ROUTES, VERSION),
        default_handler_class=NotFoundHandler,
        log_function=log_request,
        compress_response=True,
        xsrf_cookies=False,
        started_at=time.time(),
    )
    app.add_transform(PlainServerHeader)
    return app
