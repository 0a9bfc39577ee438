"""What ``make fuzz`` (schemathesis) found at the HTTP edge, kept as regression tests.

- A 405 must say which methods the path does have (``Allow``, RFC 9110 §15.5.6), for methods Tornado
  knows (DELETE on a read-only path) and for ones it does not (TRACE, PROPFIND).
- An ``Idempotency-Key`` header that is present but empty is a malformed key (400), not "no key":
  otherwise a client whose key generation broke would silently lose its retry protection, and the
  documented format (8–128 of ``[A-Za-z0-9_-:.]``) would not be what is enforced.
"""

from __future__ import annotations

import pytest

from tasks_kit import TASKS

ME = "/api/v1/me"
LOGIN = "/api/v1/auth/password-login"


@pytest.mark.gen_test
async def test_405_names_the_methods_the_path_has(api, people):
    rep = await people.rep()
    admin = await people.admin()
    cases = (
        ("DELETE", ME, rep.token, "GET"),
        ("TRACE", ME, rep.token, "GET"),
        ("PROPFIND", ME, None, "GET"),
        ("GET", LOGIN, None, "POST"),
        ("PUT", "/api/v1/users", admin.token, "GET, POST"),
        ("PUT", "/api/v1/leads/0123456789abcdef01234567", rep.token, "GET, PATCH"),
        ("GET", "/api/v1/allocation-rules/0123456789abcdef01234567", admin.token, "PATCH, DELETE"),
    )
    for method, path, token, allow in cases:
        resp = await api.request(method, path, token=token, body=b"{}" if method in ("PUT", "PATCH") else None)
        assert resp.status == 405, (method, path, resp.status)
        assert resp.error_code == "request.method_not_allowed"
        assert resp.headers.get("Allow") == allow, (method, path, resp.headers.get("Allow"))


@pytest.mark.gen_test
async def test_an_empty_idempotency_key_is_refused_and_nothing_is_created(api, people):
    rep = await people.rep()
    body = {"title": "回电话", "due_at": "2030-01-01T09:00:00+08:00"}
    for key in ("", "   ", "short", "x" * 129, "has space inside"):
        resp = await api.post(TASKS, json=body, token=rep.token, headers={"Idempotency-Key": key})
        assert resp.status == 400, (key, resp.status, resp.body)
        assert resp.error_code == "idempotency.bad_key"
    listed = await api.get(TASKS, token=rep.token)
    assert listed.status == 200 and listed.json["items"] == []
    ok = await api.post(TASKS, json=body, token=rep.token, headers={"Idempotency-Key": "fuzz-key-0001"})
    assert ok.status == 201
