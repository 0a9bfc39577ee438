"""What ``make fuzz`` (schemathesis) found at the HTTP edge, kept as regression tests.

- A 405 must say which methods the path does have (``Allow``, RFC 9110 §15.5.6), for methods Tornado
  knows (DELETE on a read-only path) and for ones it does not (TRACE, PROPFIND).
- An ``Idempotency-Key`` header that is present but empty is a malformed key (400), not "no key":
  otherwise a client whose key generation broke would silently lose its retry protection, and the
  documented format (8–128 of ``[A-Za-z0-9_-:.]``) would not be what is enforced.
"""

from __future__ import annotations

from urllib.parse import quote

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


@pytest.mark.gen_test
async def test_lead_lists_page_and_search_after_a_lead_changed_hands(api, people):
    """Once one lead's activity time was stamped by the database (a reassignment) and the others'
    by the application (capture), the admin's search and every page after the first answered 500
    on the embedded database (it compared the two kinds of timestamps). Lists sort on a value that
    is written one way, so both work, in activity order."""
    admin, manager = await people.admin(), await people.manager()
    rep, other = await people.rep(), await people.rep()
    made = []
    for i in range(3):
        r = await api.post("/api/v1/leads", json={"name": f"翻页{i}号"}, token=rep.token)
        assert r.status == 201, r.body
        made.append(r.json["id"])
    r = await api.post(f"/api/v1/leads/{made[0]}/assign", json={"owner_id": other.id, "reason": "调整"}, token=manager.token)
    assert r.status == 200, r.body
    for token in (admin.token, manager.token):
        seen, cursor = [], None
        while True:
            r = await api.get("/api/v1/leads?limit=1" + (f"&cursor={cursor}" if cursor else ""), token=token)
            assert r.status == 200, r.body
            seen += [lead["id"] for lead in r.json["items"]]
            cursor = r.json["next_cursor"]
            if not cursor:
                break
        assert seen[:3] == [made[0], made[2], made[1]], seen  # the reassigned lead moved to the top
        r = await api.get("/api/v1/leads?q=" + quote("翻页"), token=token)
        assert r.status == 200, r.body
        assert [lead["id"] for lead in r.json["items"]] == [made[0], made[2], made[1]]


@pytest.mark.gen_test
async def test_leads_from_before_the_activity_number_are_listed_after_the_upgrade(api, people, ctx, raw_db):
    from server.__main__ import upgrade_data

    rep = await people.rep()
    made = []
    for i in range(3):
        r = await api.post("/api/v1/leads", json={"name": f"旧数据{i}"}, token=rep.token)
        made.append(r.json["id"])
    raw_db.leads.update_many({}, {"$unset": {"updated_ms": ""}})  # as an older build stored them
    await upgrade_data(ctx)
    assert raw_db.leads.count_documents({"updated_ms": {"$exists": False}}) == 0
    r = await api.get("/api/v1/leads", token=rep.token)
    assert [lead["id"] for lead in r.json["items"]] == made[::-1]
