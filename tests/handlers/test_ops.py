"""Operations endpoints, the OpenAPI document and docs (offline), metrics, and behaviour while the
database is away and after it comes back."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from conftest import TEST_ADMIN, Api
from handlers.base import ApiHandler
from server.app import API_ROUTES, make_app
from server.context import build_context
from server.db import connect, ensure_indexes
from server.embedded import EmbeddedMongo, free_port
from server.openapi import METHODS, route_operations
from server.schemas.users import UserCreate


@pytest.mark.gen_test
async def test_healthz_and_readyz(api):
    health = await api.get("/healthz")
    assert health.status == 200 and health.json == {"status": "ok"}
    ready = await api.get("/readyz")
    assert ready.status == 200 and ready.json == {"status": "ready"}


# ---------------------------------------------------------------- OpenAPI
def undeclared_methods(routes: list[tuple]) -> list[str]:
    """Handler methods in the route table that have no ``@operation``: prepare() would refuse them
    and the OpenAPI document would not list them."""
    missing = []
    for route in routes:
        handler = route[1]
        for cls in handler.__mro__:
            if cls is ApiHandler or not issubclass(cls, ApiHandler):
                break
            for method in METHODS:
                func = cls.__dict__.get(method)
                if func is not None and getattr(func, "operation", None) is None:
                    missing.append(f"{cls.__name__}.{method} ({route[0]})")
    return missing


def test_undeclared_method_check_catches_a_bare_method():
    class Bare(ApiHandler):
        async def get(self) -> None:  # no @operation
            pass

    assert undeclared_methods([(r"/bare", Bare)]) == ["Bare.get (/bare)"]


def test_every_handler_method_declares_an_operation():
    assert not undeclared_methods(API_ROUTES)


@pytest.mark.gen_test
async def test_openapi_lists_every_route_and_method(api):
    resp = await api.get("/openapi.json")
    assert resp.status == 200
    doc = resp.json
    assert doc["openapi"].startswith("3.")
    ops = route_operations(API_ROUTES)
    assert len(ops) >= 15
    missing = [f"{m.upper()} {p}" for p, m, _, _ in ops if m not in doc["paths"].get(p, {})]
    assert not missing, missing
    declared = {(p, m) for p, m, _, _ in ops}
    listed = {(p, m) for p, methods in doc["paths"].items() for m in methods}
    assert listed == declared
    for path in doc["paths"]:
        assert re.fullmatch(r"(/[A-Za-z0-9_.\-]+|/\{\w+\})+", path), f"not a plain OpenAPI path: {path}"
    # the schemas it references exist
    text = resp.body.decode()
    for ref in set(re.findall(r'"#/components/schemas/([^"]+)"', text)):
        assert ref in doc["components"]["schemas"], ref
    me = doc["paths"]["/api/v1/me"]["get"]
    assert "401" in me["responses"] and me["responses"]["200"]["content"]["application/json"]["schema"]
    assert doc["paths"]["/api/v1/auth/password-login"]["post"]["security"] == []


# ---------------------------------------------------------------- docs, offline
@pytest.mark.gen_test
async def test_docs_render_with_no_internet(api):
    page = await api.get("/docs")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    html = page.body.decode()
    assert "/docs/static/swagger-ui-bundle.js" in html and "/openapi.json" in html
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html), "the docs page must not load anything from the internet"
    for asset in re.findall(r'(?:src|href)="(/docs/static/[^"]+)"', html):
        resp = await api.get(asset)
        assert resp.status == 200 and len(resp.body) > 1000, asset
    bundle = await api.get("/docs/static/swagger-ui-bundle.js")
    assert bundle.status == 200 and b"SwaggerUIBundle" in bundle.body
    assert "javascript" in bundle.headers.get("Content-Type", "")
    missing = await api.get("/docs/static/../../../../etc/passwd")
    assert missing.status in (403, 404)


@pytest.mark.gen_test
async def test_metrics_count_requests(api):
    await api.get("/healthz")
    await api.get("/api/v1/me")
    resp = await api.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    text = resp.body.decode()
    assert "# TYPE mpcrm_http_requests_total counter" in text
    assert re.search(r'mpcrm_http_requests_total\{handler="HealthHandler",method="GET",status="200"\} 1\.0', text), text
    assert re.search(r'mpcrm_http_requests_total\{handler="MeHandler",method="GET",status="401"\} 1\.0', text), text
    assert "mpcrm_http_request_seconds_bucket" in text


@pytest.mark.gen_test
async def test_metrics_count_every_request_of_each_kind_apart(api):
    """Each (method, handler, status) keeps its own count, request after request."""
    for _ in range(3):
        await api.get("/healthz")
    for _ in range(2):
        await api.get("/api/v1/me")
    await api.post("/api/v1/me", json={})
    text = (await api.get("/metrics")).body.decode()
    assert re.search(r'mpcrm_http_requests_total\{handler="HealthHandler",method="GET",status="200"\} 3\.0', text), text
    assert re.search(r'mpcrm_http_requests_total\{handler="MeHandler",method="GET",status="401"\} 2\.0', text), text
    assert re.search(r'mpcrm_http_requests_total\{handler="MeHandler",method="POST",status="(401|405)"\} 1\.0', text), text
    assert re.search(r'mpcrm_http_request_seconds_count\{handler="HealthHandler"\} 3\.0', text), text


# ---------------------------------------------------------------- the database goes away and comes back
class TestDatabaseOutage:
    """Every database call is bounded by PyMongo's timeoutMS (retries included), so while the
    database is away a request answers 503 within about that time; here 1 s to keep the suite fast."""

    @pytest.fixture
    def settings_overrides(self):
        return {"db_timeout_ms": 1000, "db_server_selection_timeout_ms": 500}

    @pytest.mark.gen_test(timeout=60)
    async def test_database_down_is_503_and_recovers(self, tmp_path, settings):
        embedded = EmbeddedMongo(tmp_path / "flaky", free_port())
        await asyncio.to_thread(embedded.start)
        database = connect(embedded.uri, settings, db_name="mpcrm_flaky")
        server = None
        try:
            await ensure_indexes(database.db)
            ctx = build_context(settings, database)
            sock, port = bind_unused_port()
            server = HTTPServer(make_app(ctx))
            server.add_sockets([sock])
            api = Api(f"http://127.0.0.1:{port}")
            user = await ctx.users.create_user(
                TEST_ADMIN, UserCreate(username="ops.admin", password="long-password-1", name="ops", role="admin")
            )
            token = (await ctx.auth.issue_tokens(user))["access_token"]
            assert (await api.get("/api/v1/me", token=token)).status == 200
            assert (await api.get("/readyz")).status == 200

            await asyncio.to_thread(embedded.stop)

            for path, kw in (("/api/v1/me", {"token": token}), ("/readyz", {})):
                started = time.monotonic()
                resp = await api.get(path, timeout=15, **kw)
                elapsed = time.monotonic() - started
                assert resp.status == 503, (path, resp.status, resp.body)
                assert resp.json["error"]["code"] == "service.unavailable", (path, resp.body)
                assert resp.headers.get("Retry-After"), path
                assert elapsed < settings.db_timeout_ms / 1000 + 1.5, (path, elapsed)
                if path == "/readyz":  # the usual envelope, saying why
                    assert [(d["field"], d["code"]) for d in resp.json["error"]["details"]] == [("database", "unreachable")], resp.body
            login = await api.post("/api/v1/auth/password-login", json={"username": "ops.admin", "password": "long-password-1"}, timeout=15)
            assert (login.status, login.error_code) == (503, "service.unavailable"), login.body
            assert (await api.get("/healthz")).status == 200, "the process itself is alive"

            await asyncio.to_thread(embedded.start)  # same data folder, same port

            deadline = time.monotonic() + 15
            while True:
                me = await api.get("/api/v1/me", token=token, timeout=15)
                if me.status == 200 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert me.status == 200, me.body
            assert me.json["username"] == "ops.admin", "the data written before the outage is still there"
            assert (await api.get("/readyz")).status == 200
            relogin = await api.post("/api/v1/auth/password-login", json={"username": "ops.admin", "password": "long-password-1"})
            assert relogin.status == 200
        finally:
            if server is not None:
                server.stop()
            await database.close()
            await asyncio.to_thread(embedded.stop)


@pytest.mark.gen_test
async def test_made_up_methods_share_one_metrics_label(api):
    """A client inventing methods (PROPFIND, FOO1, FOO2, …) must not grow the series without end."""
    for method in ("PROPFIND", "FOOA", "FOOB"):
        await api.request(method, "/healthz")
    text = (await api.get("/metrics")).body.decode()
    assert "PROPFIND" not in text and "FOOA" not in text
    assert re.search(r'mpcrm_http_requests_total\{handler="[A-Za-z]+",method="OTHER",status="405"\} 3\.0', text), text
