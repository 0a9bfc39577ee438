"""Probes of the console's static serving (handlers/console.py): nothing outside the build is
served, however the path is spelled; the page cannot be framed (clickjacking of the approve
button) and no file is content-sniffed."""

from __future__ import annotations

import pytest
import tornado.web

from handlers.console import console_routes


@pytest.fixture
def app(ctx, tmp_path):
    build = tmp_path / "dist"
    (build / "assets").mkdir(parents=True)
    (build / "index.html").write_text("<!doctype html><title>console</title>")
    (build / "assets" / "index-Ab12Cd34.js").write_text("1")
    (tmp_path / "secret.txt").write_text("outside the build")
    (tmp_path / "assets-secret.txt").write_text("outside the build")
    return tornado.web.Application(console_routes(str(build)))


@pytest.mark.gen_test
async def test_nothing_outside_the_build_is_served(api):
    for path in (
        "/console/../secret.txt", "/console/%2e%2e/secret.txt", "/console/%2E%2E%2Fsecret.txt",
        "/console/assets/../../secret.txt", "/console/assets/..%2F..%2Fsecret.txt", "/console/..%5Csecret.txt",
        "/console/%2e%2e/assets-secret.txt", "/console//etc/passwd", "/console/assets//etc/passwd",
    ):
        resp = await api.get(path)
        assert b"outside the build" not in resp.body and b"root:" not in resp.body, path
        assert resp.status in (200, 403, 404), (path, resp.status)


@pytest.mark.gen_test
async def test_the_page_cannot_be_framed_and_nothing_is_sniffed(api):
    page = await api.get("/console/approvals")
    assert page.status == 200
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    asset = await api.get("/console/assets/index-Ab12Cd34.js")
    assert asset.headers["X-Content-Type-Options"] == "nosniff"
