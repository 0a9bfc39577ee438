"""A forged page cursor never widens what a caller sees (OWASP API1).

A cursor is opaque but not secret: anyone can build one with ``server.paging.encode_cursor``. Every
paginated list must AND the cursor's condition with the caller's own filter, never replace a key of
it (``_id``, ``$or``, …). Each list is probed here with a cursor that points "before everything"
(or "after everything" for ascending lists), so a leak shows as someone else's item on the page.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pytest
from bson import ObjectId

from capture_kit import answers, create_form, submit, unique_phone
from leads_kit import LEADS, POOL, make_lead, pool_lead
from server.paging import encode_cursor
from server.services.sync import scope_key

# "Before everything" in each kind of key: the largest ObjectId, a string above every id we make,
# a time far in the future / the past.
TOP_OID = ObjectId("f" * 24)
TOP_STR = "~" * 8
FAR_FUTURE = datetime(2999, 1, 1, tzinfo=timezone.utc)
FAR_PAST = datetime(1971, 1, 1, tzinfo=timezone.utc)
FAR_FUTURE_MS = int(FAR_FUTURE.timestamp() * 1000)  # lead lists sort on updated_ms, a number


def forged(*parts) -> str:
    return quote(encode_cursor(list(parts)))


async def page(api, person, path: str, cursor: str) -> list[dict]:
    sep = "&" if "?" in path else "?"
    r = await api.get(f"{path}{sep}cursor={cursor}&limit=100", token=person.token)
    assert r.status == 200, r.body
    return r.json["items"]


def ids(items: list[dict], key: str = "id") -> set[str]:
    return {i[key] for i in items}


@pytest.mark.gen_test
async def test_teams(api, people):
    manager = await people.manager()
    await people.team("华南销售部")
    await people.team("西北销售部")
    items = await page(api, manager, "/api/v1/teams", forged(TOP_OID))
    assert ids(items) == {manager.team_id}


@pytest.mark.gen_test
async def test_users(api, people):
    manager = await people.manager()
    mate = await people.rep()
    outsider = await people.rep(team="华南销售部")
    await people.admin()
    items = await page(api, manager, "/api/v1/users", forged(TOP_OID))
    assert ids(items) == {manager.id, mate.id}
    assert outsider.id not in ids(items)


@pytest.mark.gen_test
async def test_leads_by_activity_and_by_next_followup_and_with_a_search(api, people):
    rep, other = await people.rep(), await people.rep()
    soon = (datetime.now(timezone.utc) + timedelta(days=2)).isoformat()
    mine = await make_lead(api, rep, name="张三", next_followup_at=soon)
    theirs = await make_lead(api, other, name="张四", next_followup_at=soon)
    assert ids(await page(api, rep, LEADS, forged(FAR_FUTURE_MS, TOP_STR))) == {mine["id"]}
    assert ids(await page(api, rep, f"{LEADS}?q=张", forged(FAR_FUTURE_MS, TOP_STR))) == {mine["id"]}
    assert ids(await page(api, rep, f"{LEADS}?sort=next_followup", forged(FAR_PAST, ""))) == {mine["id"]}
    assert theirs["id"] not in ids(await page(api, rep, f"{LEADS}?owner_id={other.id}", forged(FAR_FUTURE_MS, TOP_STR)))


@pytest.mark.gen_test
async def test_pool(api, people):
    rep = await people.rep()
    far = await people.rep(team="华南销售部")
    ours = await pool_lead(api, rep)
    await pool_lead(api, far)
    assert ids(await page(api, rep, POOL, forged(FAR_FUTURE_MS, TOP_STR))) == {ours["id"]}


@pytest.mark.gen_test
async def test_timeline(api, people):
    rep = await people.rep()
    mine = await make_lead(api, rep)
    other = await make_lead(api, await people.rep())
    items = await page(api, rep, f"{LEADS}/{mine['id']}/timeline", forged(FAR_FUTURE, TOP_OID))
    assert items and {i["lead_id"] for i in items} == {mine["id"]}
    assert other["id"] not in {i["lead_id"] for i in items}


@pytest.mark.gen_test
async def test_tasks(api, people):
    rep, other = await people.rep(), await people.rep()
    due = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    mine = await api.post("/api/v1/tasks", json={"title": "我的", "due_at": due}, token=rep.token)
    theirs = await api.post("/api/v1/tasks", json={"title": "别人的", "due_at": due}, token=other.token)
    assert mine.status == 201 and theirs.status == 201
    assert ids(await page(api, rep, "/api/v1/tasks", forged(FAR_PAST, ""))) == {mine.json["id"]}
    assert ids(await page(api, rep, f"/api/v1/tasks?due_before={quote(due)}", forged(FAR_PAST, ""))) == set()


@pytest.mark.gen_test
async def test_notifications(api, people):
    manager = await people.manager()
    rep, other = await people.rep(), await people.rep()
    due = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    for who in (rep, other):
        r = await api.post("/api/v1/tasks", json={"title": "拜访", "due_at": due, "assignee_id": who.id}, token=manager.token)
        assert r.status == 201, r.body
    r = await api.get("/api/v1/notifications", token=other.token)
    theirs = ids(r.json["items"])
    assert theirs
    items = await page(api, rep, "/api/v1/notifications", forged(TOP_OID))
    assert len(items) == 1 and not ids(items) & theirs


async def _pending_contract(api, rep) -> dict:
    lead = await make_lead(api, rep)
    body = {"lead_id": lead["id"], "title": "年度服务合同", "amount_fen": 5_000_000, "start_date": "2027-01-01", "end_date": "2027-12-31"}
    r = await api.post("/api/v1/contracts", json=body, token=rep.token)
    assert r.status == 201, r.body
    r = await api.post(f"/api/v1/contracts/{r.json['id']}/submit", json={"version": r.json["version"]}, token=rep.token)
    assert r.status == 200, r.body
    return r.json


@pytest.mark.gen_test
async def test_contracts(api, people):
    rep, other = await people.rep(), await people.rep()
    await people.manager()
    mine = await _pending_contract(api, rep)
    await _pending_contract(api, other)
    assert ids(await page(api, rep, "/api/v1/contracts", forged(TOP_STR))) == {mine["id"]}


@pytest.mark.gen_test
async def test_approvals_inbox(api, people):
    manager = await people.manager()
    ours = await _pending_contract(api, await people.rep())
    await people.manager(team="华南销售部")
    await _pending_contract(api, await people.rep(team="华南销售部"))
    items = await page(api, manager, "/api/v1/approvals?status=pending", forged(""))
    assert ids(items, "contract_id") == {ours["id"]}


@pytest.mark.gen_test
async def test_forms(api, people):
    admin = await people.admin()
    manager = await people.manager()
    ours = await create_form(api, admin, manager.team_id, slug="ours-form")
    await create_form(api, admin, await people.team("华南销售部"), slug="theirs-form")
    assert ids(await page(api, manager, "/api/v1/forms", forged(TOP_OID))) == {ours["id"]}


@pytest.mark.gen_test
async def test_allocation_rules(api, people):
    admin = await people.admin()
    manager = await people.manager()
    rep = await people.rep()
    far_rep = await people.rep(team="华南销售部")
    made = {}
    for who in (rep, far_rep):
        body = {"name": f"规则{who.id[-4:]}", "team_id": who.team_id, "strategy": "round_robin", "members": [who.id], "match": {"tags_any": []}}
        r = await api.post("/api/v1/allocation-rules", json=body, token=admin.token)
        assert r.status == 201, r.body
        made[who.id] = r.json["id"]
    assert ids(await page(api, manager, "/api/v1/allocation-rules", forged(TOP_OID))) == {made[rep.id]}


@pytest.mark.gen_test
async def test_my_submissions(api, people, wechat, form):
    me, them = await people.customer(wechat[0]), await people.customer(wechat[0])
    for who in (me, them):
        r = await submit(api, {"answers": answers(mobile=unique_phone())}, token=who.token)
        assert r.status == 201, r.body
    mine = await page(api, me, "/api/v1/public/my-submissions", forged(TOP_OID))
    r = await api.get("/api/v1/public/my-submissions", token=them.token)
    assert len(mine) == 1 and not ids(mine, "submission_id") & ids(r.json["items"], "submission_id")


@pytest.mark.gen_test
async def test_sync(api, people, ctx):
    rep, other = await people.rep(), await people.rep()
    mine = await make_lead(api, rep)
    await make_lead(api, other)
    due = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    assert (await api.post("/api/v1/tasks", json={"title": "别人的", "due_at": due}, token=other.token)).status == 201
    now_ms = int(datetime.now(timezone.utc).timestamp() * 1000)
    state = {"k": scope_key(ctx.auth.actor_from_token(rep.token)), "s": None, "r": now_ms, "l": "!", "f": ObjectId("0" * 24), "t": "!"}
    cursor = ctx.sync.encode_cursor(state)
    r = await api.get(f"/api/v1/sync?since={quote(cursor)}", token=rep.token)
    assert r.status == 200, r.body
    assert ids(r.json["leads"]) == {mine["id"]} and r.json["tasks"] == []


@pytest.mark.gen_test
async def test_a_cursor_is_checked_as_a_cursor_not_a_filter(api, people):
    """A cursor carrying an operator object or another type is refused or matches nothing."""
    manager = await people.manager()
    await people.team("华南销售部")
    for raw in ([{"v": {"$ne": None}}], [{"x": 1}], [{"v": "x"}, {"v": "y"}]):
        bad = base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")
        r = await api.get(f"/api/v1/teams?cursor={bad}", token=manager.token)
        assert r.status in (200, 400), r.body
        if r.status == 200:
            assert ids(r.json["items"]) <= {manager.team_id}


@pytest.mark.gen_test
async def test_a_genuine_cursor_still_walks_a_filtered_list_to_the_end(api, people):
    """The cursor narrows the caller's filter and nothing else: ``?unread=true`` (a filter on a null
    field) pages through every unread notification, and the teams of an admin page through all."""
    manager, rep = await people.manager(), await people.rep()
    due = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    for i in range(5):
        r = await api.post("/api/v1/tasks", json={"title": f"拜访{i}", "due_at": due, "assignee_id": rep.id}, token=manager.token)
        assert r.status == 201, r.body
    seen, cursor = [], None
    for _ in range(10):
        r = await api.get("/api/v1/notifications?unread=true&limit=2" + (f"&cursor={cursor}" if cursor else ""), token=rep.token)
        assert r.status == 200, r.body
        seen += [n["id"] for n in r.json["items"]]
        cursor = r.json["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 5
