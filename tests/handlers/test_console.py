"""The web console's static serving at /console (handlers/console.py): the build's hashed assets
cached for a year, index.html revalidated, the console's own paths answered with index.html, a
missing asset 404 and a clear 503 while the console is not built. The
console itself is tested in a real browser by console/tests (make test-console); what an attacker
would try is in tests/security/test_console_static.py."""

from __future__ import annotations

import pytest
import tornado.web
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from conftest import Api
from handlers.console import console_routes
from server.app import make_app

INDEX = b'<!doctype html><html><head><script type="module" src="/console/assets/index-Ab12Cd34.js"></script></head><body></body></html>'


@pytest.fixture
def dist(tmp_path):
    build = tmp_path / "dist"
    (build / "assets").mkdir(parents=True)
    (build / "index.html").write_bytes(INDEX)
    (build / "assets" / "index-Ab12Cd34.js").write_text("console.log('console');")
    (build / "favicon.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (tmp_path / "secret.txt").write_text("outside the build")
    return build


@pytest.fixture
def app(ctx, dist):
    # The production route table's console routes, serving a build made for the test.
    return tornado.web.Application(console_routes(str(dist)))


@pytest.mark.gen_test
async def test_index_is_revalidated_and_hashed_assets_are_immutable(api):
    page = await api.get("/console/")
    assert page.status == 200 and page.body == INDEX
    assert page.headers["Cache-Control"] == "no-cache"
    assert page.headers["Content-Type"].startswith("text/html")
    asset = await api.get("/console/assets/index-Ab12Cd34.js")
    assert asset.status == 200 and b"console" in asset.body
    assert asset.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert "javascript" in asset.headers["Content-Type"]
    assert asset.headers["X-Content-Type-Options"] == "nosniff"
    icon = await api.get("/console/favicon.svg")
    assert icon.status == 200 and icon.headers["Cache-Control"] == "no-cache"


@pytest.mark.gen_test
async def test_console_paths_fall_back_to_the_page_but_missing_assets_do_not(api):
    for path in ("/console", "/console/dashboard", "/console/leads?stage=new", "/console/login?next=teams", "/console/a/b/c"):
        resp = await api.get(path)
        assert resp.status == 200 and resp.body == INDEX, path
        assert resp.headers["Cache-Control"] == "no-cache", path
    missing = await api.get("/console/assets/index-00000000.js")
    assert missing.status == 404


@pytest.mark.gen_test
async def test_a_missing_build_says_so(api, dist):
    (dist / "index.html").unlink()
    resp = await api.get("/console/")
    assert resp.status == 503


@pytest.mark.gen_test
async def test_the_app_serves_the_console_at_console(ctx):
    # The real application: /console is the console (built: the page; not built yet: 503 saying
    # so), not the API's JSON 404, and it carries the same Server header as every response.
    sock, port = bind_unused_port()
    server = HTTPServer(make_app(ctx))
    server.add_sockets([sock])
    try:
        resp = await Api(f"http://127.0.0.1:{port}").get("/console/dashboard")
        assert resp.status in (200, 503), resp.status
        assert not resp.headers.get("Content-Type", "").startswith("application/json")
        assert resp.headers["Server"] == "mpcrm"
        if resp.status == 200:
            assert resp.headers["Cache-Control"] == "no-cache"
    finally:
        server.stop()
