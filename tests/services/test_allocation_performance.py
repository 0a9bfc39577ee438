"""The ``performance`` strategy (按业绩分配): shares from the report counters' conversions per lead
received (and collected money) over a trailing window, with a floor; over 1,000 allocations the
shares are the weights; zero weights go to the pool with a reason. And the match fields beyond
tags and form: city, level (or the RFM layer), layer, channel, campaign, custom answers."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from bson import ObjectId

from allocation_kit import MONDAY_10, RULES, insert_waiting, make_rule, owners
from server.services.lead_store import event

NOW = MONDAY_10


async def seed_history(ctx, raw_db, team: str, history: list[tuple], days_ago: int = 5) -> None:
    """``(rep, received, converted, collected_fen)`` each: leads assigned to the rep and won, as
    timeline events, folded into the report counters by the real fold."""
    at = NOW - timedelta(days=days_ago)
    events = []
    for rep, received, converted, collected in history:
        if not received:
            continue
        leads = insert_waiting(raw_db, team, received, tags=("history",), start=at - timedelta(hours=1))
        for i, lead_id in enumerate(leads):
            events.append(event(lead_id, "assigned", None, {"owner_id": rep.id}, at=at))
            if i < converted:
                events.append(event(lead_id, "stage_changed", None, {"from": "new", "to": "customer"}, at=at + timedelta(minutes=1)))
        if collected:
            events.append(event(leads[0], "payment_recorded", None, {"owner_id": rep.id, "team_id": team, "amount_fen": collected, "received_at": at}, at=at))
    raw_db.leads.update_many({"tags": "history"}, {"$set": {"awaiting_allocation": False}})
    await ctx.leads.add_events(events)
    await ctx.stats.fold(NOW)


@pytest.mark.gen_test(timeout=90)
async def test_performance_shares_over_1000_allocations_match_the_weights_within_2_percent(ctx, people, raw_db):
    team = await people.team()
    li = await people.rep(name="李雷", capacity=5000)
    han = await people.rep(name="韩梅梅", capacity=5000)
    new = await people.rep(name="新人", capacity=5000)
    await seed_history(ctx, raw_db, team, [(li, 40, 9, 0), (han, 20, 2, 0), (new, 0, 0, 0)])
    await make_rule(ctx, team, [li, han, new], strategy="performance", match={"tags_any": ["north"]})
    leads = insert_waiting(raw_db, team, 1000)

    stats = await ctx.allocation.sweep(NOW)

    assert stats["assigned"] == 1000
    # the weights, worked out by hand: conversion rates 9/40 and 2/20 and 0, floor 5 % each, the
    # remaining 85 % in proportion to the rates
    rates = [9 / 40, 2 / 20, 0.0]
    expected = [0.05 + 0.85 * r / sum(rates) for r in rates]
    got = Counter(owners(raw_db, leads).values())
    shares = [got[p.id] / 1000 for p in (li, han, new)]
    assert all(abs(s - e) <= 0.02 for s, e in zip(shares, expected)), (shares, expected)
    assert got[new.id] >= 45, "the new rep still gets leads (the floor)"
    reason = raw_db.leads.find_one({"_id": next(i for i in leads if owners(raw_db, [i])[i] == li.id)})["assignment"]["reason"]
    assert "李雷: 63.8% share, converted 9 of 40 in 30 days" in reason["en"], reason
    assert "李雷 份额 63.8%，30 天内转化 40 条中的 9 条" in reason["zh-CN"], reason
    assert "shares: 李雷 63.8%, 韩梅梅 31.2%, 新人 5%" in reason["en"], reason


@pytest.mark.gen_test(timeout=60)
async def test_revenue_weight_blends_in_collected_money_and_the_window_drops_old_history(api, ctx, people, raw_db):
    admin = await people.admin()
    team = await people.team()
    a = await people.rep(name="甲")
    b = await people.rep(name="乙")
    await seed_history(ctx, raw_db, team, [(a, 10, 1, 900_00), (b, 10, 1, 100_00)])
    r = await api.post(RULES, json={"name": "业绩", "team_id": team, "strategy": "performance", "members": [a.id, b.id],
                                    "performance": {"revenue_weight": 1, "floor_share": 0.1}}, token=admin.token, headers={"Accept-Language": "en"})
    assert r.status == 201, r.body
    assert r.json["performance"] == {"window_days": 30, "revenue_weight": 1.0, "floor_share": 0.1}
    preview = await api.post(f"{RULES}/{r.json['id']}/preview", json={}, token=admin.token, headers={"Accept-Language": "en"})
    assert preview.status == 200, preview.body
    # money only: 900 : 100 over the 80 % above the floors → 82 % and 18 %
    assert "甲: 82% share, converted 1 of 10 in 30 days, collected 900.00 yuan, turn 1 of 1000" in preview.json["reason"], preview.json
    assert "shares: 甲 82%, 乙 18%" in preview.json["reason"]

    r = await api.patch(f"{RULES}/{r.json['id']}", json={"performance": {"window_days": 3, "floor_share": 0.1}, "version": 1}, token=admin.token)
    assert r.status == 200, r.body
    preview = await api.post(f"{RULES}/{r.json['id']}/preview", json={}, token=admin.token, headers={"Accept-Language": "en"})
    assert "甲: 50% share, converted 0 of 0 in 3 days" in preview.json["reason"], "the history is 5 days old: outside a 3-day window"


@pytest.mark.gen_test
async def test_zero_performance_weights_send_the_lead_to_the_pool_with_a_reason(ctx, people, raw_db):
    team = await people.team()
    a, b = await people.rep(name="甲"), await people.rep(name="乙")
    await make_rule(ctx, team, [a, b], strategy="performance", performance={"floor_share": 0})
    leads = insert_waiting(raw_db, team, 2)

    stats = await ctx.allocation.sweep(NOW)

    assert stats["pooled"] == 2 and stats["assigned"] == 0
    doc = raw_db.leads.find_one({"_id": leads[0]})
    assert doc["pool"] and doc.get("owner_id") is None
    pooled = raw_db.lead_events.find_one({"lead_id": leads[0], "kind": "pooled"})
    assert "performance weights sum to zero (no active member, or no conversion in 30 days); sent to the team's pool" in pooled["data"]["reason"]["en"], pooled


@pytest.mark.gen_test
async def test_bad_performance_rules_and_match_fields_are_422(api, people):
    admin = await people.admin()
    team = await people.team()
    a, b = await people.rep(), await people.rep()
    outsider = await people.rep(team="华南销售部")

    def body(**changes):
        return {"name": "规则", "team_id": team, "strategy": "performance", "members": [a.id, b.id], **changes}

    bad = {
        "unknown strategy": body(strategy="by_luck"),
        "floor out of range": body(performance={"floor_share": 0.6}),
        "floors above 100 %": {**body(performance={"floor_share": 0.4}), "members": [a.id, b.id, (await people.rep()).id]},
        "negative floor": body(performance={"floor_share": -0.1}),
        "revenue weight above 1": body(performance={"revenue_weight": 1.5}),
        "window of 0 days": body(performance={"window_days": 0}),
        "performance settings on round-robin": body(strategy="round_robin", performance={"window_days": 7}),
        "zero weights": body(strategy="weighted", weights=[0, 0]),
        "member of another team": body(members=[a.id, outsider.id]),
        "city as a string": body(match={"city": "北京"}),
        "unknown level": body(match={"level": ["D"]}),
        "layer as a number": body(match={"layer": [1]}),
        "channel with an operator": body(match={"channel": ["$ne"]}),
        "answers not a list": body(match={"answers": {"industry": "制造"}}),
        "answers with a bad key": body(match={"answers": {"$where": ["x"]}}),
        "unknown match field": body(match={"industry": ["制造"]}),
        "repeated city": body(match={"city": ["北京", "北京"]}),
    }
    for why, rule in bad.items():
        r = await api.post(RULES, json=rule, token=admin.token)
        assert r.status == 422, (why, r.status, r.body)
    assert (await api.get(RULES, token=admin.token)).json["items"] == []
    r = await api.post(RULES, json=body(performance={"floor_share": 0.5}), token=admin.token)
    assert r.status == 201, r.body


@pytest.mark.gen_test
async def test_rules_match_city_level_layer_channel_campaign_and_answers(ctx, people, raw_db):
    team = await people.team()
    reps = {name: await people.rep(name=name) for name in ("城市", "等级", "分层", "渠道", "活动", "行业", "其余")}
    matches = {"城市": {"city": ["北京", "天津"]}, "等级": {"level": ["A"]}, "分层": {"layer": ["B"]}, "渠道": {"channel": ["douyin"]},
               "活动": {"campaign": ["expo-2026"]}, "行业": {"answers": {"industry": ["制造", "零售"]}}, "其余": {}}
    for priority, (name, match) in enumerate(matches.items()):
        await make_rule(ctx, team, [reps[name]], name=f"按{name}", priority=priority, match=match)
    leads = insert_waiting(raw_db, team, 7, tags=())
    fields = [{"city": "天津"}, {"level": "A"}, {"layer": "B"}, {"source": {"kind": "form", "channel": "douyin"}},
              {"source": {"kind": "form", "campaign": "expo-2026"}}, {"answers": {"industry": ["零售", "其他"]}}, {"city": "上海", "level": "C"}]
    for lead_id, extra in zip(leads, fields):
        raw_db.leads.update_one({"_id": lead_id}, {"$set": extra})

    await ctx.allocation.sweep(NOW)

    got = owners(raw_db, leads)
    assert [got[i] for i in leads] == [reps[n].id for n in matches], got
    reasons = [raw_db.leads.find_one({"_id": i})["assignment"]["reason"]["en"] for i in leads]
    assert reasons[0].startswith("rule 按城市 matched city 天津;"), reasons[0]
    assert reasons[5].startswith("rule 按行业 matched industry 零售;"), reasons[5]
    assert reasons[6].startswith("rule 按其余 matches every lead;"), reasons[6]


@pytest.mark.gen_test
async def test_a_level_match_reads_the_layer_when_the_team_says_so(ctx, people, raw_db):
    team = await people.team()
    a = await people.rep(name="甲")
    await make_rule(ctx, team, [a], match={"level": ["A"]})
    leads = insert_waiting(raw_db, team, 2, tags=())
    raw_db.leads.update_one({"_id": leads[0]}, {"$set": {"level": "C", "layer": "A"}})
    raw_db.leads.update_one({"_id": leads[1]}, {"$set": {"level": "A", "layer": "C"}})
    raw_db.teams.update_one({"_id": ObjectId(team)}, {"$set": {"settings": {"rfm": {"drives_allocation": True}}}})
    ctx.users.forget_team_settings(team)

    await ctx.allocation.sweep(NOW)

    got = owners(raw_db, leads)
    assert got[leads[0]] == a.id and got[leads[1]] is None
    assert "level (RFM layer) A" in raw_db.leads.find_one({"_id": leads[0]})["assignment"]["reason"]["en"]
