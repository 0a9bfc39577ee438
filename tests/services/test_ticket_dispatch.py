"""Ticket dispatch through the allocation engine (``AllocationService.dispatch_ticket``): ticket rules
written over HTTP, the service called with plain dicts as the ticket service calls it; which
members a ticket rule may have; the fallback to the team's service staff; lead allocation never
uses ticket rules."""

from __future__ import annotations

import pytest
from bson import ObjectId

from allocation_kit import MONDAY_10, RULES, insert_waiting, owners

NOW = MONDAY_10


def ticket_rule(team_id: str, members, **changes) -> dict:
    body = {"name": "投诉处理", "team_id": team_id, "kind": "ticket", "strategy": "round_robin",
            "members": [m if isinstance(m, str) else m.id for m in members], "match": {"categories": ["complaint"]}}
    body.update(changes)
    return body


def ticket(team_id: str, category: str = "complaint", priority: str = "normal") -> dict:
    return {"_id": str(ObjectId()), "team_id": team_id, "category": category, "priority": priority}


def customer_lead(team_id: str, **fields) -> dict:
    return {"_id": str(ObjectId()), "team_id": team_id, "tags": [], "level": None, "layer": None, "source": {"kind": "form"}, **fields}


async def service_staff(people, n: int, team: str = "华北销售部", **kw) -> list:
    return [await people.rep(team=team, name=f"售后{i}", service=True, **kw) for i in range(n)]


@pytest.mark.gen_test
async def test_a_ticket_rule_dispatches_round_robin_by_category_with_a_reason(api, people, ctx, raw_db):
    admin = await people.admin()
    team = await people.team()
    a, b = await service_staff(people, 2)
    r = await api.post(RULES, json=ticket_rule(team, [a, b]), token=admin.token)
    assert r.status == 201, r.body
    assert r.json["kind"] == "ticket"
    rule_id = r.json["id"]

    picks = [await ctx.allocation.dispatch_ticket(ticket(team), customer_lead(team), NOW) for _ in range(4)]

    assert [p["assignee_id"] for p in picks] == [a.id, b.id, a.id, b.id]
    assert {p["rule_id"] for p in picks} == {rule_id} and {p["strategy"] for p in picks} == {"round_robin"}
    assert picks[0]["reason"] == {
        "zh-CN": "规则 投诉处理：匹配类别 complaint；轮询第 1/2 位",
        "en": "rule 投诉处理 matched category complaint; round-robin turn 1 of 2",
    }
    assert raw_db.allocation_rules.find_one({"_id": ObjectId(rule_id)})["turn"] == 4, "the turn is the only thing written"


@pytest.mark.gen_test
async def test_ticket_rules_match_priority_and_the_customers_tags_and_level(api, people, ctx):
    admin = await people.admin()
    team = await people.team()
    vip_desk, desk = await service_staff(people, 2)
    r = await api.post(RULES, json=ticket_rule(team, [vip_desk], name="VIP 加急", priority=1,
                                               match={"priorities": ["urgent", "high"], "tags_any": ["vip"], "level": ["A"]}), token=admin.token)
    assert r.status == 201, r.body
    r = await api.post(RULES, json=ticket_rule(team, [desk], name="其他", priority=2, match={}), token=admin.token)
    assert r.status == 201, r.body

    vip = customer_lead(team, tags=["vip"], level="A")
    urgent = await ctx.allocation.dispatch_ticket(ticket(team, "billing", "urgent"), vip, NOW)
    low = await ctx.allocation.dispatch_ticket(ticket(team, "billing", "low"), vip, NOW)
    not_a = await ctx.allocation.dispatch_ticket(ticket(team, "billing", "urgent"), customer_lead(team, tags=["vip"], level="B"), NOW)

    assert urgent["assignee_id"] == vip_desk.id
    assert urgent["reason"]["en"] == "rule VIP 加急 matched tag vip, priority urgent, level A; round-robin turn 1 of 1"
    assert low["assignee_id"] == desk.id and not_a["assignee_id"] == desk.id
    assert low["reason"]["en"] == "rule 其他 matches every lead; round-robin turn 1 of 1"


@pytest.mark.gen_test
async def test_level_matches_read_the_layer_when_the_team_says_so(api, people, ctx, raw_db):
    admin = await people.admin()
    team = await people.team()
    (desk,) = await service_staff(people, 1)
    r = await api.post(RULES, json=ticket_rule(team, [desk], match={"level": ["A"]}), token=admin.token)
    assert r.status == 201, r.body
    layer_a = customer_lead(team, level="C", layer="A")
    assert (await ctx.allocation.dispatch_ticket(ticket(team), layer_a, NOW))["rule_id"] is None, "level C: the rule does not match"

    raw_db.teams.update_one({"_id": ObjectId(team)}, {"$set": {"settings": {"rfm": {"drives_allocation": True}}}})
    ctx.users.forget_team_settings(team)
    pick = await ctx.allocation.dispatch_ticket(ticket(team), layer_a, NOW)

    assert pick["rule_id"] == r.json["id"] and pick["assignee_id"] == desk.id
    assert "level (RFM layer) A" in pick["reason"]["en"] and "等级（RFM 分层）A" in pick["reason"]["zh-CN"], pick["reason"]


@pytest.mark.gen_test
async def test_no_rule_matches_least_loaded_service_staff_then_nobody(api, people, ctx):
    team = await people.team()
    await people.rep(name="普通销售")  # not service staff: never a candidate
    staff = await service_staff(people, 2)
    await people.rep(team="华南销售部", name="别队售后", service=True)

    pick = await ctx.allocation.dispatch_ticket(ticket(team, "billing"), customer_lead(team), NOW)

    assert pick["assignee_id"] in {s.id for s in staff} and pick["rule_id"] is None and pick["strategy"] == "least_loaded"
    assert pick["reason"] == {
        "zh-CN": "没有匹配的工单规则，分给团队售后人员；负载最低：0 张未结工单",
        "en": "no ticket rule matched; given to the team's service staff; least loaded: 0 open tickets",
    }

    empty = await people.team("空团队")
    nobody = await ctx.allocation.dispatch_ticket(ticket(empty), customer_lead(empty), NOW)
    assert nobody == {"assignee_id": None, "rule_id": None, "strategy": "none", "reason": {
        "zh-CN": "没有匹配的工单规则，分给团队售后人员；团队没有可接单的售后人员，等待经理分派",
        "en": "no ticket rule matched; given to the team's service staff; no service staff available; waiting for a manager",
    }}


@pytest.mark.gen_test
async def test_a_rule_member_who_left_service_is_skipped_and_named(api, people, ctx):
    admin = await people.admin()
    team = await people.team()
    a, b = await service_staff(people, 2)
    r = await api.post(RULES, json=ticket_rule(team, [a, b], strategy="least_loaded"), token=admin.token)
    assert r.status == 201, r.body
    for person in (a, b):  # both leave the service desk after the rule was made
        user = (await api.get(f"/api/v1/users/{person.id}", token=admin.token)).json
        r = await api.patch(f"/api/v1/users/{person.id}", json={"service": False, "version": user["version"]}, token=admin.token)
        assert r.status == 200 and r.json["service"] is False, r.body
    (c,) = await service_staff(people, 1)

    pick = await ctx.allocation.dispatch_ticket(ticket(team), customer_lead(team), NOW)

    assert pick["assignee_id"] == c.id and pick["rule_id"] is None
    assert pick["reason"]["en"] == (
        "rule 投诉处理 matched category complaint; nobody available; nobody on the rule available; given to the team's service staff; "
        "least loaded: 0 open tickets; skipped 售后0: not service staff, 售后1: not service staff"
    )


@pytest.mark.gen_test
async def test_bad_ticket_rules_are_422_and_nothing_is_stored(api, people):
    admin = await people.admin()
    team = await people.team()
    desk, = await service_staff(people, 1)
    seller = await people.rep(name="销售")
    inactive = await people.rep(name="停用售后", service=True, active=False)
    other_team = await people.rep(team="华南销售部", service=True)
    bad = {
        "a member who is not service staff": ticket_rule(team, [desk, seller]),
        "an inactive service member": ticket_rule(team, [desk, inactive]),
        "service staff of another team": ticket_rule(team, [desk, other_team]),
        "performance for tickets": ticket_rule(team, [desk], strategy="performance"),
        "a daily quota on a ticket rule": ticket_rule(team, [desk], daily_quota=5),
        "an unknown priority": ticket_rule(team, [desk], match={"priorities": ["asap"]}),
        "a category that is not a code": ticket_rule(team, [desk], match={"categories": ["投诉"]}),
        "categories as a string": ticket_rule(team, [desk], match={"categories": "complaint"}),
        "an unknown kind": ticket_rule(team, [desk], kind="case"),
        "categories on a lead rule": ticket_rule(team, [desk], kind="lead"),
    }
    for why, body in bad.items():
        r = await api.post(RULES, json=body, token=admin.token, headers={"Accept-Language": "en"})
        assert r.status == 422, (why, r.status, r.body)
    r = await api.post(RULES, json=ticket_rule(team, [desk, seller]), token=admin.token, headers={"Accept-Language": "en"})
    assert r.json["error"]["details"] == [{"field": "members", "code": "not_service", "value": seller.id,
                                           "message": f"not active service staff of the rule's team: {seller.id}"}]
    assert (await api.get(RULES, token=admin.token)).json["items"] == []


@pytest.mark.gen_test
async def test_lead_allocation_never_uses_ticket_rules(api, people, ctx, raw_db):
    admin = await people.admin()
    team = await people.team()
    desk, = await service_staff(people, 1)
    r = await api.post(RULES, json=ticket_rule(team, [desk], match={}), token=admin.token)
    assert r.status == 201, r.body
    leads = insert_waiting(raw_db, team, 3)

    stats = await ctx.allocation.sweep(NOW)

    assert stats["pooled"] == 3 and stats["assigned"] == 0
    assert set(owners(raw_db, leads).values()) == {None}


@pytest.mark.gen_test
async def test_the_service_flag_is_set_by_admins_and_shown(api, people):
    admin = await people.admin()
    team = await people.team()
    r = await api.post("/api/v1/users", json={"username": "desk.one", "password": "a-long-password", "name": "客服", "role": "rep",
                                              "team_id": team, "service": True}, token=admin.token)
    assert r.status == 201 and r.json["service"] is True, r.body
    plain = await people.rep()
    r = await api.get(f"/api/v1/users/{plain.id}", token=admin.token)
    assert r.json["service"] is False
    manager = await people.manager()
    r = await api.patch(f"/api/v1/users/{plain.id}", json={"service": True, "version": r.json["version"]}, token=manager.token)
    assert r.status == 403


@pytest.mark.gen_test
async def test_least_loaded_counts_open_assigned_and_in_progress_tickets_only(api, people, ctx, raw_db):
    admin = await people.admin()
    team = await people.team()
    busy, calm, idle = await service_staff(people, 3)
    r = await api.post(RULES, json=ticket_rule(team, [busy, calm, idle], strategy="least_loaded"), token=admin.token)
    assert r.status == 201, r.body
    # a small seeded tickets collection (written by the ticket service in the app): only the
    # fields the count reads
    loads = {busy.id: ["open", "assigned", "in_progress"], calm.id: ["in_progress", "resolved", "closed"], idle.id: ["resolved", "closed", "closed"]}
    raw_db.tickets.insert_many([{"_id": str(ObjectId()), "team_id": team, "assignee_id": who, "status": status}
                                for who, statuses in loads.items() for status in statuses])

    first = await ctx.allocation.dispatch_ticket(ticket(team), customer_lead(team), NOW)
    raw_db.tickets.insert_one({"_id": str(ObjectId()), "team_id": team, "assignee_id": idle.id, "status": "assigned"})
    raw_db.tickets.insert_one({"_id": str(ObjectId()), "team_id": team, "assignee_id": idle.id, "status": "open"})
    second = await ctx.allocation.dispatch_ticket(ticket(team), customer_lead(team), NOW)

    assert first["assignee_id"] == idle.id and first["strategy"] == "least_loaded"
    assert first["reason"]["en"] == "rule 投诉处理 matched category complaint; least loaded: 0 open tickets"
    assert second["assignee_id"] == calm.id and second["reason"]["zh-CN"] == "规则 投诉处理：匹配类别 complaint；负载最低：1 张未结工单"
    assert raw_db.allocation_rules.find_one({"_id": ObjectId(r.json["id"])})["turn"] == 0, "least-loaded spends no turn"
