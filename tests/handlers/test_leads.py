"""Field reps work their leads on the phone: lists, capture, lifecycle, edits, and bad input.

Follow-ups are in test_followups.py, the public pool in test_pool.py.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pytest

from leads_kit import LEADS, make_lead, new_uuid, unique_phone, walk


def _iso(days: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(days=days)).isoformat()


# ---------------------------------------------------------------- lists
@pytest.mark.gen_test
async def test_list_filters_by_stage_tag_owner_q_and_phone(api, people):
    rep = await people.rep()
    a = await make_lead(api, rep, name="王建国", company="华为", tags=["vip", "北京"], phone="13900001111")
    b = await make_lead(api, rep, name="李四", company="王氏集团", tags=["北京"])
    c = await make_lead(api, rep, name="张三", company="腾讯", tags=["vip"])
    r = await api.post(f"{LEADS}/{c['id']}/stage", json={"to": "contacted"}, token=rep.token)
    assert r.status == 200, r.body

    async def ids(query: str) -> set[str]:
        r = await api.get(f"{LEADS}?{query}", token=rep.token)
        assert r.status == 200, r.body
        return {x["id"] for x in r.json["items"]}

    assert await ids("stage=contacted") == {c["id"]}
    assert await ids("stage=new") == {a["id"], b["id"]}
    assert await ids("tag=vip") == {a["id"], c["id"]}
    assert await ids("tag=" + quote("北京")) == {a["id"], b["id"]}
    assert await ids(f"owner_id={rep.id}") == {a["id"], b["id"], c["id"]}
    # q is a prefix of the name or of the company, not a substring
    assert await ids("q=" + quote("王")) == {a["id"], b["id"]}
    assert await ids("q=" + quote("建国")) == set()
    assert await ids("q=" + quote("腾")) == {c["id"]}
    # phone: exact, in any common format
    for form in ("13900001111", "+86 139-0000-1111", "0086 139 0000 1111"):
        assert await ids("phone=" + quote(form)) == {a["id"]}, form
    assert await ids("phone=13900001112") == set()
    assert await ids("phone=not-a-phone") == set()


@pytest.mark.gen_test
async def test_list_sorts_by_recent_update_and_by_next_followup(api, people):
    rep = await people.rep()
    later = await make_lead(api, rep, name="后天", next_followup_at=_iso(2))
    soon = await make_lead(api, rep, name="明天", next_followup_at=_iso(1))
    latest = await make_lead(api, rep, name="下周", next_followup_at=_iso(7))
    r = await api.get(LEADS, token=rep.token)  # default sort=updated: newest first
    assert [x["id"] for x in r.json["items"]] == [latest["id"], soon["id"], later["id"]]
    # touching the oldest lead brings it to the top
    r = await api.patch(f"{LEADS}/{later['id']}", json={"level": "A", "version": 1}, token=rep.token)
    assert r.status == 200, r.body
    r = await api.get(f"{LEADS}?sort=updated", token=rep.token)
    assert [x["id"] for x in r.json["items"]] == [later["id"], latest["id"], soon["id"]]
    r = await api.get(f"{LEADS}?sort=next_followup", token=rep.token)
    assert r.status == 200, r.body
    assert [x["id"] for x in r.json["items"]] == [soon["id"], later["id"], latest["id"]]
    r = await api.get(f"{LEADS}?sort=oldest", token=rep.token)
    assert r.status == 422


@pytest.mark.gen_test
async def test_cursor_pagination_walks_everything_once(api, people):
    rep = await people.rep()
    # the leads a search must skip are older than the ones it finds, so page 2 would reach them
    made = [await make_lead(api, rep, name=f"李{i}", next_followup_at=_iso(10 + i)) for i in range(3)]
    made += [await make_lead(api, rep, name=f"张{i}", next_followup_at=_iso(i + 1)) for i in range(5)]
    all_ids = [m["id"] for m in reversed(made)]

    items = await walk(api, rep.token, f"{LEADS}?limit=2")
    assert [x["id"] for x in items] == all_ids  # newest first, no duplicates, none missing

    items = await walk(api, rep.token, f"{LEADS}?limit=2&sort=next_followup")
    assert [x["id"] for x in items] == [m["id"] for m in made[3:] + made[:3]]

    # a search keeps its filter on every page, not just the first
    items = await walk(api, rep.token, f"{LEADS}?limit=2&q=" + quote("张"))
    assert [x["name"] for x in items] == [f"张{i}" for i in reversed(range(5))]
    items = await walk(api, rep.token, f"{LEADS}?limit=2&sort=next_followup&q=" + quote("张"))
    assert [x["name"] for x in items] == [f"张{i}" for i in range(5)]

    r = await api.get(f"{LEADS}?cursor=garbage!", token=rep.token)
    assert r.status == 400 and r.error_code == "request.bad_cursor"


@pytest.mark.gen_test
async def test_lists_are_scoped_by_role(api, people):
    rep = await people.rep()
    teammate = await people.rep()
    outsider = await people.rep(team="华南销售部")
    manager = await people.manager()
    admin = await people.admin()
    mine = await make_lead(api, rep, name="我的")
    theirs = await make_lead(api, teammate, name="同事的")
    far = await make_lead(api, outsider, name="别组的")

    async def ids(person, query: str = "") -> set[str]:
        r = await api.get(f"{LEADS}{query}", token=person.token)
        assert r.status == 200, r.body
        return {x["id"] for x in r.json["items"]}

    assert await ids(rep) == {mine["id"]}
    assert await ids(manager) == {mine["id"], theirs["id"]}
    assert await ids(admin) == {mine["id"], theirs["id"], far["id"]}
    # a filter never widens the scope
    assert await ids(rep, f"?owner_id={teammate.id}") == set()
    assert await ids(rep, f"?owner_id={outsider.id}") == set()
    assert await ids(manager, f"?owner_id={outsider.id}") == set()
    assert await ids(manager, f"?owner_id={teammate.id}") == {theirs["id"]}
    assert await ids(admin, f"?owner_id={outsider.id}") == {far["id"]}


@pytest.mark.gen_test
async def test_list_items_are_compact_and_detail_is_full(api, people, recorder):
    rep = await people.rep()
    lead = await make_lead(api, rep, name="周总", phone="+86 139-0000-2222", notes="喜欢喝茶，周三下午有空")
    with recorder.counting() as cmds:
        r = await api.get(LEADS, token=rep.token)
    assert r.status == 200 and len(cmds) <= 2, cmds
    (item,) = r.json["items"]
    assert item["phone"] == "139****2222"
    assert "notes" not in item and "answers" not in item
    assert "13900002222" not in r.body.decode()
    with recorder.counting() as cmds:
        r = await api.get(f"{LEADS}/{lead['id']}", token=rep.token)
    assert r.status == 200 and len(cmds) <= 2, cmds
    assert r.json["notes"] == "喜欢喝茶，周三下午有空"
    assert r.json["phone"] == "139****2222"
    assert "13900002222" not in r.body.decode()


@pytest.mark.gen_test
async def test_a_lead_read_is_never_answered_from_a_cache(api, people):
    """API answers are ``no-store``: no ETag, and a phone that sends ``If-None-Match`` anyway (a
    stale proxy, a generic HTTP cache) still gets the lead itself, never an empty 304. The body is
    UTF-8 JSON with the Chinese text as it is (not ``\\u`` escapes), in one compact line."""
    rep = await people.rep()
    lead = await make_lead(api, rep, name="周总", company="上海某某科技有限公司", tags=["展会"], notes="周三下午有空")
    first = await api.get(f"{LEADS}/{lead['id']}", token=rep.token)
    assert first.status == 200, first.body
    assert first.headers["Cache-Control"] == "no-store"
    assert first.headers["Content-Type"] == "application/json; charset=utf-8"
    assert "ETag" not in first.headers
    text = first.body.decode("utf-8")
    assert "周总" in text and "上海某某科技有限公司" in text and "\\u" not in text
    assert "\n" not in text and '", "' not in text  # compact separators
    for condition in ("*", '"0123456789abcdef"', f'"{lead["version"]}"'):
        again = await api.get(f"{LEADS}/{lead['id']}", token=rep.token, headers={"If-None-Match": condition})
        assert again.status == 200, (condition, again.status)
        assert again.json == first.json

# ---------------------------------------------------------------- capture
@pytest.mark.gen_test
async def test_rep_captures_a_lead_and_owns_it(api, people, raw_db):
    rep = await people.rep()
    r = await api.post(LEADS, json={"name": "赵总", "company": "字节", "phone": "13900003333", "tags": ["展会"]}, token=rep.token)
    assert r.status == 201, r.body
    lead = r.json
    assert lead["owner_id"] == rep.id and lead["team_id"] == rep.team_id
    assert lead["stage"] == "new" and lead["pool"] is False and lead["version"] == 1
    assert lead["assignment"]["owner_id"] == rep.id
    r = await api.get(f"{LEADS}/{lead['id']}", token=rep.token)
    assert r.status == 200 and r.json["name"] == "赵总"
    # an owner_id in the body is refused, not obeyed
    other = await people.rep()
    r = await api.post(LEADS, json={"name": "偷梁换柱", "owner_id": other.id}, token=rep.token)
    assert r.status == 422
    assert raw_db.leads.count_documents({"name": "偷梁换柱"}) == 0


@pytest.mark.gen_test
async def test_idempotency_key_retry_returns_the_same_lead(api, people, raw_db):
    rep = await people.rep()
    body = {"name": "重试客户", "phone": unique_phone()}
    headers = {"Idempotency-Key": "capture-0001-abcdef"}
    first = await api.post(LEADS, json=body, token=rep.token, headers=headers)
    again = await api.post(LEADS, json=body, token=rep.token, headers=headers)
    assert first.status == again.status == 201, (first.body, again.body)
    assert first.json["id"] == again.json["id"]
    assert raw_db.leads.count_documents({"name": "重试客户"}) == 1
    # the same key with another body is refused
    r = await api.post(LEADS, json={**body, "name": "别的"}, token=rep.token, headers=headers)
    assert r.status == 422
    assert raw_db.leads.count_documents({}) == 1


@pytest.mark.gen_test
async def test_client_generated_id_sent_twice_makes_one_lead(api, people, raw_db):
    rep = await people.rep()
    admin = await people.admin()
    lead_id = new_uuid()
    body = {"id": lead_id, "name": "离线录入", "notes": "地铁里没信号"}
    first = await api.post(LEADS, json=body, token=rep.token)
    again = await api.post(LEADS, json=body, token=rep.token)
    assert first.status == again.status == 201, (first.body, again.body)
    assert first.json["id"] == again.json["id"] == lead_id
    assert raw_db.leads.count_documents({"_id": lead_id}) == 1
    assert raw_db.lead_events.count_documents({"lead_id": lead_id, "kind": "created"}) == 1
    r = await api.get(f"/api/v1/users/{rep.id}", token=admin.token)
    assert r.json["open_leads"] == 1
    # someone else's id is not theirs to overwrite
    other = await people.rep()
    r = await api.post(LEADS, json={"id": lead_id, "name": "抢注"}, token=other.token)
    assert r.status == 409
    assert raw_db.leads.find_one({"_id": lead_id})["name"] == "离线录入"


@pytest.mark.gen_test
async def test_same_phone_as_an_existing_lead_is_a_duplicate(api, people, raw_db):
    rep = await people.rep()
    other = await people.rep()
    first = await make_lead(api, rep, name="原始", phone="13900004444")
    r = await api.post(LEADS, json={"name": "重复", "phone": "+86 139-0000-4444"}, token=rep.token)
    assert r.status == 409 and r.error_code == "lead.duplicate", r.body
    assert r.json["error"]["details"][0]["value"] == first["id"]  # data, the same in every language
    r = await api.post(LEADS, json={"name": "重复", "phone": "13900004444"}, token=other.token)
    assert r.status == 409 and r.error_code == "lead.duplicate", r.body
    assert first["id"] not in r.body.decode()  # another rep's lead id is not disclosed
    assert raw_db.leads.count_documents({}) == 1


# ---------------------------------------------------------------- lifecycle
async def _move(api, person, lead_id: str, to: str, reason: str | None = None):
    body = {"to": to} if reason is None else {"to": to, "reason": reason}
    return await api.post(f"{LEADS}/{lead_id}/stage", json=body, token=person.token)


@pytest.mark.gen_test
async def test_lifecycle_walk_with_timeline(api, people):
    rep = await people.rep()
    lead = await make_lead(api, rep, name="生命周期")
    path = ["contacted", "qualified", "customer", "retained", "at_risk", "churned", "won_back"]
    for to in path:
        r = await _move(api, rep, lead["id"], to, reason=f"to {to}")
        assert r.status == 200, (to, r.body)
        assert r.json["stage"] == to
    r = await api.get(f"{LEADS}/{lead['id']}", token=rep.token)
    assert r.json["stage"] == "won_back" and r.json["version"] == 1 + len(path)

    events = await walk(api, rep.token, f"{LEADS}/{lead['id']}/timeline?limit=2")
    changes = [e for e in events if e["kind"] == "stage_changed"]
    assert [e["data"]["to"] for e in changes] == list(reversed(path))  # newest first
    assert all(e["actor_id"] == rep.id and e["actor_role"] == "rep" for e in changes)
    assert changes[0]["data"] == {"from": "churned", "to": "won_back", "reason": "to won_back"}
    assert events[-1]["kind"] == "created"
    assert len({e["id"] for e in events}) == len(events) == len(path) + 1


@pytest.mark.gen_test
async def test_lost_needs_a_reason_and_invalid_moves_list_the_allowed_ones(api, people, raw_db):
    rep = await people.rep()
    lead = await make_lead(api, rep, name="丢单")
    r = await _move(api, rep, lead["id"], "lost")
    assert r.status == 422 and r.error_code == "lead.reason_required", r.body
    assert raw_db.leads.find_one({"_id": lead["id"]})["stage"] == "new"
    r = await _move(api, rep, lead["id"], "customer")
    assert r.status == 409 and r.error_code == "lead.invalid_transition", r.body
    allowed = set(r.json["error"]["details"][0]["value"].split(","))
    assert allowed == {"contacted", "lost"}
    r = await _move(api, rep, lead["id"], "promoted")
    assert r.status == 422
    r = await _move(api, rep, lead["id"], "lost", reason="预算砍了")
    assert r.status == 200 and r.json["stage"] == "lost"
    r = await _move(api, rep, lead["id"], "qualified", reason="x")
    assert r.status == 409 and r.json["error"]["details"][0]["value"] == "contacted"
    r = await api.get(f"{LEADS}/{lead['id']}/timeline", token=rep.token)
    top = r.json["items"][0]
    assert top["kind"] == "stage_changed" and top["data"]["reason"] == "预算砍了" and top["actor_id"] == rep.id
    stored = raw_db.leads.find_one({"_id": lead["id"]})
    assert stored["stage"] == "lost" and stored["version"] == 2


# ---------------------------------------------------------------- edits
@pytest.mark.gen_test
async def test_patch_with_version_in_body_or_if_match(api, people):
    rep = await people.rep()
    lead = await make_lead(api, rep, name="旧名字", tags=["a"])
    r = await api.patch(f"{LEADS}/{lead['id']}", json={"name": "新名字", "tags": ["b", "a", "b"], "notes": "记一笔", "level": "B", "next_followup_at": _iso(3), "version": 1}, token=rep.token)
    assert r.status == 200, r.body
    assert r.json["name"] == "新名字" and r.json["tags"] == ["a", "b"] and r.json["notes"] == "记一笔"
    assert r.json["level"] == "B" and r.json["next_followup_at"] and r.json["version"] == 2
    r = await api.patch(f"{LEADS}/{lead['id']}", json={"level": "A"}, token=rep.token, headers={"If-Match": '"2"'})
    assert r.status == 200 and r.json["level"] == "A" and r.json["version"] == 3, r.body
    r = await api.patch(f"{LEADS}/{lead['id']}", json={"level": "C"}, token=rep.token)
    assert r.status == 422  # no version at all
    r = await api.get(f"{LEADS}/{lead['id']}", token=rep.token)
    assert r.json["name"] == "新名字" and r.json["level"] == "A" and r.json["version"] == 3


@pytest.mark.gen_test
@pytest.mark.parametrize("field,value", [
    ("owner_id", "0123456789abcdef01234567"),
    ("stage", "customer"),
    ("version", "1"),
    ("created_by", "someone"),
    ("_id", "0123456789abcdef01234567"),
    ("team_id", "0123456789abcdef01234567"),
])
async def test_patch_refuses_fields_it_does_not_own(api, people, raw_db, field, value):
    rep = await people.rep()
    lead = await make_lead(api, rep, name="不许改")
    before = raw_db.leads.find_one({"_id": lead["id"]})
    body = {"name": "改了", "version": 1, field: value}
    r = await api.patch(f"{LEADS}/{lead['id']}", json=body, token=rep.token)
    assert r.status == 422, r.body
    assert raw_db.leads.find_one({"_id": lead["id"]}) == before


@pytest.mark.gen_test
async def test_stale_version_gets_412_and_concurrent_patches_one_wins(api, people, raw_db):
    rep = await people.rep()
    lead = await make_lead(api, rep, name="并发")
    r = await api.patch(f"{LEADS}/{lead['id']}", json={"name": "第一次", "version": 1}, token=rep.token)
    assert r.status == 200
    r = await api.patch(f"{LEADS}/{lead['id']}", json={"name": "过期", "version": 1}, token=rep.token)
    assert r.status == 412 and r.error_code == "lead.version_mismatch", r.body
    assert raw_db.leads.find_one({"_id": lead["id"]})["name"] == "第一次"

    bodies = [
        {"name": "甲", "tags": ["甲"], "notes": "甲的笔记", "version": 2},
        {"name": "乙", "tags": ["乙"], "notes": "乙的笔记", "version": 2},
    ]
    results = await asyncio.gather(*[api.patch(f"{LEADS}/{lead['id']}", json=b, token=rep.token) for b in bodies])
    assert sorted(r.status for r in results) == [200, 412], [r.body for r in results]
    winner = next(r.json for r in results if r.status == 200)
    stored = raw_db.leads.find_one({"_id": lead["id"]})
    assert stored["version"] == 3
    who = winner["name"]
    assert (stored["name"], stored["tags"], stored["notes"]) == (who, [who], f"{who}的笔记")


# ---------------------------------------------------------------- bad input
@pytest.mark.gen_test
async def test_another_reps_lead_is_not_found_everywhere(api, people, raw_db):
    owner = await people.rep()
    intruder = await people.rep()
    lead = await make_lead(api, owner, name="别人的", phone="13900005555")
    before = raw_db.leads.find_one({"_id": lead["id"]})
    events_before = raw_db.lead_events.count_documents({"lead_id": lead["id"]})
    base = f"{LEADS}/{lead['id']}"
    t = intruder.token
    calls = [
        api.get(base, token=t),
        api.patch(base, json={"name": "改", "version": 1}, token=t),
        api.post(f"{base}/followups", json={"kind": "call", "content": "打个电话"}, token=t),
        api.post(f"{base}/stage", json={"to": "contacted"}, token=t),
        api.post(f"{base}/reveal", json={"field": "phone"}, token=t),
        api.post(f"{base}/claim", token=t),
        api.post(f"{base}/release", json={"reason": "我不要"}, token=t),
        api.get(f"{base}/timeline", token=t),
    ]
    for r in [await c for c in calls]:
        assert r.status == 404 and r.error_code == "lead.not_found", r.body
        assert "13900005555" not in r.body.decode()
    assert raw_db.leads.find_one({"_id": lead["id"]}) == before
    assert raw_db.lead_events.count_documents({"lead_id": lead["id"]}) == events_before
    assert raw_db.lead_events.count_documents({"kind": "followup"}) == 0
    refused = raw_db.audit_log.find_one({"action": "lead.reveal", "actor_id": intruder.id})
    assert refused is not None and refused["outcome"] == "refused"


@pytest.mark.gen_test
async def test_limit_is_capped_and_malformed_ids_are_not_found(api, people):
    rep = await people.rep()
    await make_lead(api, rep)
    for limit in ("100000", "0", "-1", "abc"):
        r = await api.get(f"{LEADS}?limit={limit}", token=rep.token)
        assert r.status == 422, (limit, r.body)
    r = await api.get(f"{LEADS}?limit=100", token=rep.token)
    assert r.status == 200
    for bad in ("nope", "0" * 24, quote('{"$ne":null}', safe=""), "x" * 300, quote("../users", safe="")):
        r = await api.get(f"{LEADS}/{bad}", token=rep.token)
        assert r.status == 404, (bad, r.body)
        r = await api.post(f"{LEADS}/{bad}/stage", json={"to": "contacted"}, token=rep.token)
        assert r.status == 404, (bad, r.body)


@pytest.mark.gen_test
async def test_pathological_search_is_escaped(api, people):
    rep = await people.rep()
    trap = await make_lead(api, rep, name="(a+)+$x")
    await make_lead(api, rep, name="a" * 60)
    await make_lead(api, rep, name="ax")
    r = await api.get(f"{LEADS}?q=" + quote("(a+)+$", safe=""), token=rep.token, timeout=5)
    assert r.status == 200, r.body
    assert [x["id"] for x in r.json["items"]] == [trap["id"]]
    r = await api.get(f"{LEADS}?q=" + quote(".*", safe=""), token=rep.token, timeout=5)
    assert r.status == 200 and r.json["items"] == []
    r = await api.get(f"{LEADS}?q=" + "a" * 51, token=rep.token)
    assert r.status == 422  # bounded length


@pytest.mark.gen_test
async def test_a_lead_read_right_after_another_request_is_one_command(api, people, recorder):
    """The instance remembers the user it read for at most a second (MPCRM_AUTH_CACHE_TTL_S): the
    next read sends only the lead's find, like a bare handler would."""
    rep = await people.rep()
    lead = await make_lead(api, rep)
    assert (await api.get(f"{LEADS}/{lead['id']}", token=rep.token)).status == 200
    with recorder.counting() as cmds:
        r = await api.get(f"{LEADS}/{lead['id']}", token=rep.token)
    assert r.status == 200 and r.json["id"] == lead["id"]
    assert cmds == ["find"], cmds
