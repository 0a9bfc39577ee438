"""Allocation rules over HTTP: who may write and read them, bad definitions → 422, and
the preview that explains the next pick without assigning anything."""

from __future__ import annotations

import asyncio

import pytest

from allocation_kit import RULES, capture, make_form, owners
from capture_kit import lead_of


def rule_body(team_id: str, members, **changes) -> dict:
    body = {"name": "华北大客户", "team_id": team_id, "strategy": "round_robin",
            "members": [m if isinstance(m, str) else m.id for m in members], "match": {"tags_any": ["north"]}}
    body.update(changes)
    return body


@pytest.mark.gen_test
async def test_bad_rule_definitions_are_422(api, people):
    admin = await people.admin()
    team = await people.team()
    a, b = await people.rep(), await people.rep()
    outsider = await people.rep(team="华南销售部")
    bad = {
        "unknown strategy": rule_body(team, [a, b], strategy="lottery"),
        "weights not matching members": rule_body(team, [a, b], strategy="weighted", weights=[3, 2, 1]),
        "weighted without weights": rule_body(team, [a, b], strategy="weighted"),
        "member from another team": rule_body(team, [a, outsider]),
        "member that does not exist": rule_body(team, [a, "5f0000000000000000000000"]),
        "not a user id": rule_body(team, [a, "bob"]),
        "empty member list on an active rule": rule_body(team, []),
        "duplicate members": rule_body(team, [a, a]),
    }
    for why, body in bad.items():
        r = await api.post(RULES, json=body, token=admin.token)
        assert r.status == 422, (why, r.status, r.body)
    r = await api.get(RULES, token=admin.token)
    assert r.json["items"] == [], "nothing was stored"
    # an inactive rule may be empty; a PATCH that breaks a valid rule is refused too
    r = await api.post(RULES, json=rule_body(team, [], active=False), token=admin.token)
    assert r.status == 201, r.body
    r = await api.post(RULES, json=rule_body(team, [a, b], strategy="weighted", weights=[3, 1]), token=admin.token)
    assert r.status == 201, r.body
    rule = r.json
    r = await api.patch(f"{RULES}/{rule['id']}", json={"members": [a.id], "version": rule["version"]}, token=admin.token)
    assert r.status == 422, r.body
    assert [(d["code"], d["message"]) for d in r.json["error"]["details"]] == [("value_error", "取值无效：weights must give one weight per member")]
    r = await api.patch(f"{RULES}/{rule['id']}", json={"members": [a.id, outsider.id], "version": rule["version"]}, token=admin.token,
                        headers={"Accept-Language": "en"})
    assert r.status == 422, r.body
    assert r.json["error"]["details"] == [{"field": "members", "code": "not_in_team", "message": f"not reps or managers of the rule's team: {outsider.id}",
                                           "value": outsider.id}]
    r = await api.patch(f"{RULES}/{rule['id']}", json={"weights": [1, 1], "version": rule["version"]}, token=admin.token)
    assert r.status == 200 and r.json["weights"] == [1, 1] and r.json["version"] == 2, r.body


@pytest.mark.gen_test
async def test_only_admins_write_rules_managers_read_their_teams(api, people):
    admin = await people.admin()
    team = await people.team()
    manager, rep = await people.manager(), await people.rep()
    other_manager = await people.manager(team="华南销售部")
    south_rep = await people.rep(team="华南销售部")
    r = await api.post(RULES, json=rule_body(team, [rep]), token=admin.token)
    assert r.status == 201
    north_rule = r.json
    r = await api.post(RULES, json=rule_body(south_rep.team_id, [south_rep], name="华南"), token=admin.token)
    south_rule = r.json

    for who in (rep, manager):
        assert (await api.post(RULES, json=rule_body(team, [rep], name="x"), token=who.token)).status == 403
        assert (await api.patch(f"{RULES}/{north_rule['id']}", json={"name": "y", "version": 1}, token=who.token)).status == 403
        assert (await api.delete(f"{RULES}/{north_rule['id']}", token=who.token)).status == 403
    assert (await api.get(RULES, token=rep.token)).status == 403
    assert (await api.post(f"{RULES}/{north_rule['id']}/preview", json={"tags": ["north"]}, token=rep.token)).status == 403

    r = await api.get(RULES, token=manager.token)
    assert r.status == 200 and [x["id"] for x in r.json["items"]] == [north_rule["id"]]
    r = await api.get(f"{RULES}?team_id={south_rep.team_id}", token=manager.token)
    assert r.status == 200 and south_rule["id"] not in [x["id"] for x in r.json["items"]], "a filter never widens a manager's view"
    r = await api.post(f"{RULES}/{south_rule['id']}/preview", json={"tags": ["north"]}, token=manager.token)
    assert r.status == 404, "another team's rule looks missing"
    r = await api.post(f"{RULES}/{south_rule['id']}/preview", json={"tags": ["north"]}, token=other_manager.token)
    assert r.status == 200 and r.json["owner_id"] == south_rep.id

    r = await api.get(RULES, token=admin.token)
    assert {x["id"] for x in r.json["items"]} == {north_rule["id"], south_rule["id"]}
    r = await api.delete(f"{RULES}/{north_rule['id']}", token=admin.token)
    assert r.status == 204
    assert (await api.delete(f"{RULES}/{north_rule['id']}", token=admin.token)).status == 404


@pytest.mark.parametrize("settings_overrides", [{"allocate_on_capture": False}], ids=["captured-lead-left-waiting"])
@pytest.mark.gen_test
async def test_preview_explains_the_next_pick_and_assigns_nothing(api, people, ctx, raw_db):
    admin = await people.admin()
    team = await people.team()
    manager = await people.manager()
    a = await people.rep(name="李雷")
    b = await people.rep(name="韩梅梅")
    r = await api.post(RULES, json=rule_body(team, [a, b]), token=admin.token)
    rule = r.json
    await make_form(ctx, team)
    leads = await capture(ctx, "north-expo", 1)

    for _ in range(2):
        r = await api.post(f"{RULES}/{rule['id']}/preview", json={"tags": ["north"]}, token=manager.token, headers={"Accept-Language": "en"})
        assert r.status == 200, r.body
        assert r.json["owner_id"] == a.id and r.json["owner_name"] == "李雷" and r.json["matched"] is True
        assert r.json["reason"] == "rule 华北大客户 matched tag north; round-robin turn 1 of 2"
    r = await api.post(f"{RULES}/{rule['id']}/preview", json={"tags": ["north"]}, token=manager.token)
    assert r.json["reason"] == "规则 华北大客户：匹配标签 north；轮询第 1/2 位", "no Accept-Language: zh-CN"
    assert owners(raw_db, leads) == {leads[0]: None}
    assert (await api.get(RULES, token=admin.token)).json["items"][0]["turn"] == 0

    r = await api.post(f"{RULES}/{rule['id']}/preview", json={"tags": ["south"]}, token=admin.token)
    assert r.status == 200 and r.json["matched"] is False and r.json["owner_id"] is None

    await ctx.allocation.sweep(ctx.clock.now())
    r = await api.post(f"{RULES}/{rule['id']}/preview", json={"tags": ["north"]}, token=admin.token, headers={"Accept-Language": "en"})
    assert r.json["owner_id"] == b.id and "turn 2 of 2" in r.json["reason"], "after one assignment the next is 韩梅梅"


@pytest.fixture
def settings_overrides():
    return {"allocate_on_capture": True}


@pytest.mark.gen_test
async def test_a_form_lead_is_assigned_right_after_capture_and_the_owner_sees_why(api, people, ctx, raw_db):
    admin = await people.admin()
    team = await people.team()
    rep = await people.rep(name="张三")
    r = await api.post(RULES, json=rule_body(team, [rep]), token=admin.token)
    rule = r.json
    await make_form(ctx, team)
    r = await api.post("/api/v1/public/forms/north-expo/submissions", json={"answers": {"name": "王老板", "mobile": "13612345678"}})
    assert r.status == 201, r.body
    lead_id = lead_of(raw_db, r)

    for _ in range(40):  # allocation runs after the response: usually well within a second
        r = await api.get(f"/api/v1/leads/{lead_id}", token=rep.token)
        if r.status == 200:
            break
        await asyncio.sleep(0.05)
    assert r.status == 200, "the rep can open the lead: it is theirs"
    assignment = r.json["assignment"]
    assert assignment["owner_id"] == rep.id and assignment["rule_id"] == rule["id"] and assignment["strategy"] == "round_robin"
    assert assignment["reason"] == "规则 华北大客户：匹配标签 north；轮询第 1/1 位"
    r = await api.get(f"/api/v1/leads/{lead_id}", token=rep.token, headers={"Accept-Language": "en"})
    assert r.json["assignment"]["reason"] == "rule 华北大客户 matched tag north; round-robin turn 1 of 1"
    r = await api.get(f"/api/v1/leads/{lead_id}/timeline", token=rep.token)
    assert [e["kind"] for e in r.json["items"]].count("assigned") == 1
    [assigned] = [e for e in r.json["items"] if e["kind"] == "assigned"]
    assert assigned["actor_role"] == "system" and assigned["data"]["reason"] == "规则 华北大客户：匹配标签 north；轮询第 1/1 位"
    r = await api.get(f"/api/v1/leads/{lead_id}/timeline", token=rep.token, headers={"Accept-Language": "en"})
    [assigned] = [e for e in r.json["items"] if e["kind"] == "assigned"]
    assert assigned["data"]["reason"] == "rule 华北大客户 matched tag north; round-robin turn 1 of 1"
    r = await api.get("/api/v1/notifications", token=rep.token)
    assert [n["kind"] for n in r.json["items"]] == ["lead_assigned"], r.body
