"""Bulk assign (``POST /leads/assign``), the unsaved-rule preview (``POST /allocation-rules/preview``)
and imports through the allocation rules, over HTTP."""

from __future__ import annotations

from collections import Counter

import pytest
from bson import ObjectId

from allocation_kit import MONDAY_10, RULES, insert_waiting, make_rule, owners
from test_import_export import csv_file, upload, wait_done

ASSIGN = "/api/v1/leads/assign"


async def pooled(ctx, raw_db, team: str, n: int, tags: tuple[str, ...] = ("north",)) -> list[str]:
    """``n`` leads in the team's pool, the way they get there (no rule takes them)."""
    leads = insert_waiting(raw_db, team, n, tags=tags)
    await ctx.allocation.sweep(MONDAY_10)
    return leads


# ---------------------------------------------------------------- bulk assign
@pytest.mark.gen_test(timeout=60)
async def test_dry_run_previews_then_the_run_assigns_200_leads_in_a_few_commands(api, people, ctx, raw_db, recorder):
    team = await people.team()
    manager = await people.manager(name="王经理")
    rep = await people.rep(name="李雷", capacity=1000)
    leads = await pooled(ctx, raw_db, team, 200)
    body = {"filter": {"pool": True, "tags": ["north"]}, "to_user_id": rep.id}

    preview = await api.post(ASSIGN, json={**body, "dry_run": True}, token=manager.token)

    assert preview.status == 200, preview.body
    assert preview.json == {"run_id": None, "dry_run": True, "requested": 200, "assigned": 200,
                            "to": [{"owner_id": rep.id, "owner_name": "李雷", "count": 200}], "skipped": []}
    assert set(owners(raw_db, leads).values()) == {None}, "a dry run writes nothing"

    with recorder.counting() as commands:
        r = await api.post(ASSIGN, json=body, token=manager.token, headers={"Accept-Language": "en"})

    assert r.status == 200, r.body
    assert r.json["assigned"] == 200 and r.json["run_id"] and r.json["skipped"] == []
    assert len(commands) <= 16, Counter(commands)
    assert set(owners(raw_db, leads).values()) == {rep.id}
    assert raw_db.users.find_one({"_id": ObjectId(rep.id)})["open_leads"] == 200
    doc = raw_db.leads.find_one({"_id": leads[0]})
    assert not doc["pool"] and doc["assignment"]["strategy"] == "bulk" and doc["assignment"]["reason"]["en"] == "assigned in bulk by 王经理"
    assert raw_db.lead_events.count_documents({"kind": "assigned", "data.bulk_id": r.json["run_id"]}) == 200
    assert raw_db.notifications.count_documents({"user_id": rep.id, "kind": "lead_assigned"}) == 1, "one notice for the batch"

    again = await api.post(ASSIGN, json=body, token=manager.token)
    assert again.json["assigned"] == 0 and again.json["requested"] == 0, "they are no longer in the pool"


@pytest.mark.gen_test(timeout=60)
async def test_ids_are_shared_out_by_a_rule_and_skips_are_explained(api, people, ctx, raw_db):
    team = await people.team()
    manager = await people.manager()
    a, b = await people.rep(name="甲"), await people.rep(name="乙")
    rule = await make_rule(ctx, team, [a, b], name="轮询")
    leads = await pooled(ctx, raw_db, team, 4, tags=("south",))  # the rule matches "north": bulk assign ignores its match
    r = await api.post(ASSIGN, json={"ids": leads[:2], "to_user_id": a.id}, token=manager.token)
    assert r.json["assigned"] == 2, r.body

    r = await api.post(ASSIGN, json={"ids": leads + ["5f0000000000000000000000"], "rule_id": str(rule["_id"])}, token=manager.token,
                       headers={"Accept-Language": "en"})

    assert r.status == 200, r.body
    got = owners(raw_db, leads)
    assert r.json["requested"] == 5
    # turn 1 → 甲, who already owns leads[0]: skipped; turn 2 → 乙 takes leads[1] from 甲; 3 → 甲; 4 → 乙
    assert [got[i] for i in leads] == [a.id, b.id, a.id, b.id]
    assert {s["reason"]: s["count"] for s in r.json["skipped"]} == {"not_found": 1, "already_owner": 1}
    assert {(t["owner_name"], t["count"]) for t in r.json["to"]} == {("甲", 1), ("乙", 2)}
    assert raw_db.users.find_one({"_id": ObjectId(a.id)})["open_leads"] == 2, "甲 lost leads[1] and got leads[2]"
    assert [s["lead_ids"] for s in r.json["skipped"] if s["reason"] == "not_found"] == [[]]
    reason = raw_db.leads.find_one({"_id": leads[2]})["assignment"]["reason"]["en"]
    assert reason.startswith("rule 轮询 assigned in bulk by") and "round-robin turn" in reason, reason


@pytest.mark.gen_test(timeout=60)
async def test_bulk_assign_limits_and_bad_input(api, people, ctx, raw_db):
    admin = await people.admin()
    team = await people.team()
    manager = await people.manager()
    rep = await people.rep()
    inactive = await people.rep(active=False)
    await pooled(ctx, raw_db, team, 501)

    r = await api.post(ASSIGN, json={"filter": {"pool": True}, "to_user_id": rep.id, "dry_run": True}, token=manager.token, headers={"Accept-Language": "en"})
    assert r.status == 422 and r.error_code == "lead.bulk_too_many", r.body
    assert "500" in r.json["error"]["message"]
    bad = {
        "both ids and filter": {"ids": ["5f0000000000000000000000"], "filter": {}, "to_user_id": rep.id},
        "neither target": {"ids": ["5f0000000000000000000000"]},
        "both targets": {"ids": ["5f0000000000000000000000"], "to_user_id": rep.id, "rule_id": "5f0000000000000000000000"},
        "501 ids": {"ids": [str(ObjectId()) for _ in range(501)], "to_user_id": rep.id},
        "repeated ids": {"ids": ["5f0000000000000000000000"] * 2, "to_user_id": rep.id},
        "operator in the filter": {"filter": {"stage": {"$ne": "lost"}}, "to_user_id": rep.id},
        "tags as a string": {"filter": {"tags": "north"}, "to_user_id": rep.id},
        "inactive target": {"ids": ["5f0000000000000000000000"], "to_user_id": inactive.id},
        "unknown field": {"ids": ["5f0000000000000000000000"], "to_user_id": rep.id, "owner_id": rep.id},
    }
    for why, body in bad.items():
        r = await api.post(ASSIGN, json=body, token=manager.token)
        assert r.status == 422, (why, r.status, r.body)
    r = await api.post(ASSIGN, json={"filter": {"pool": True}, "to_user_id": rep.id}, token=admin.token)
    assert r.status == 422 and r.error_code == "lead.bulk_team_required", r.body
    r = await api.post(ASSIGN, json={"ids": ["5f0000000000000000000000"], "rule_id": "5f0000000000000000000000"}, token=manager.token)
    assert r.status == 404 and r.error_code == "allocation_rule.not_found"
    r = await api.post(ASSIGN, json={"ids": ["5f0000000000000000000000"], "to_user_id": rep.id}, token=rep.token)
    assert r.status == 403
    assert raw_db.leads.count_documents({"owner_id": {"$ne": None}}) == 0, "nothing was assigned"


@pytest.mark.gen_test(timeout=60)
async def test_a_retried_bulk_assign_with_the_same_key_assigns_once(api, people, ctx, raw_db):
    team = await people.team()
    manager = await people.manager()
    a, b = await people.rep(name="甲"), await people.rep(name="乙")
    rule = await make_rule(ctx, team, [a, b])
    leads = await pooled(ctx, raw_db, team, 6, tags=("east",))
    body = {"ids": leads, "rule_id": str(rule["_id"])}
    headers = {"Idempotency-Key": "bulk-assign-0001"}

    first = await api.post(ASSIGN, json=body, token=manager.token, headers=headers)
    again = await api.post(ASSIGN, json=body, token=manager.token, headers=headers)

    assert first.status == again.status == 200, (first.body, again.body)
    assert again.json == first.json and first.json["assigned"] == 6
    assert raw_db.allocation_rules.find_one({"_id": rule["_id"]})["turn"] == 6, "the rule's turns were taken once"
    assert raw_db.lead_events.count_documents({"kind": "assigned", "lead_id": {"$in": leads}}) == 6
    r = await api.post(ASSIGN, json={**body, "dry_run": False, "reason": "换一个"}, token=manager.token, headers=headers)
    assert r.status == 422 and r.error_code == "idempotency.key_reused"


# ---------------------------------------------------------------- unsaved-rule preview
@pytest.mark.gen_test
async def test_an_unsaved_rule_is_previewed_like_a_saved_one(api, people, ctx, raw_db):
    admin = await people.admin()
    team = await people.team()
    manager = await people.manager()
    a, b = await people.rep(name="甲"), await people.rep(name="乙")
    rule = {"name": "北京", "team_id": team, "strategy": "round_robin", "members": [a.id, b.id], "match": {"city": ["北京"], "channel": ["douyin"]}}

    r = await api.post(f"{RULES}/preview", json={"rule": rule, "lead": {"city": "北京", "channel": "douyin"}}, token=manager.token,
                       headers={"Accept-Language": "en"})

    assert r.status == 200, r.body
    assert r.json == {"matched": True, "rule_id": None, "owner_id": a.id, "owner_name": "甲", "strategy": "round_robin",
                      "reason": "rule 北京 matched city 北京, channel douyin; round-robin turn 1 of 2"}
    saved = await api.post(RULES, json=rule, token=admin.token)
    same = await api.post(f"{RULES}/{saved.json['id']}/preview", json={"city": "北京", "channel": "douyin"}, token=admin.token, headers={"Accept-Language": "en"})
    assert {k: v for k, v in same.json.items() if k != "rule_id"} == {k: v for k, v in r.json.items() if k != "rule_id"}
    r = await api.post(f"{RULES}/preview", json={"rule": rule, "lead": {"city": "上海"}}, token=admin.token, headers={"Accept-Language": "en"})
    assert r.json["matched"] is False and r.json["reason"] == "rule 北京 does not match these tags and source"
    assert (await api.get(RULES, token=admin.token)).json["items"].__len__() == 1, "the preview saved nothing"

    other = await people.team("华南销售部")
    r = await api.post(f"{RULES}/preview", json={"rule": {**rule, "team_id": other}}, token=manager.token)
    assert r.status == 404, "a manager previews rules of their own team only"
    r = await api.post(f"{RULES}/preview", json={"rule": {**rule, "strategy": "lottery"}}, token=admin.token)
    assert r.status == 422
    r = await api.post(f"{RULES}/preview", json={"rule": {**rule, "members": [a.id, (await people.rep(team="华南销售部")).id]}}, token=admin.token)
    assert r.status == 422 and r.error_code == "allocation_rule.bad_members"
    assert raw_db.allocation_rules.count_documents({}) == 1


# ---------------------------------------------------------------- imports through the rules
@pytest.mark.gen_test(timeout=60)
async def test_an_import_can_go_through_the_rules_or_to_the_pool(api, people, ctx, raw_db):
    team = await people.team()
    manager = await people.manager()
    a, b = await people.rep(name="甲"), await people.rep(name="乙")
    await make_rule(ctx, team, [a, b], match={"tags_any": ["expo"]})
    rows = [["姓名", "手机", "标签"]] + [[f"客户{i}", f"1350000{i:04d}", "expo"] for i in range(4)]

    r = await upload(api, manager, csv_file(rows), allocate="rules")
    assert r.status == 202, r.body
    report = await wait_done(api, manager, r.json["import_id"])
    assert report["created"] == 4 and report["allocate"] == "rules", report
    ruled = list(raw_db.leads.find({"source.import_id": r.json["import_id"]}))
    assert Counter(d["owner_id"] for d in ruled) == {a.id: 2, b.id: 2}
    assert not any(d["pool"] for d in ruled)
    assert raw_db.lead_events.count_documents({"kind": "assigned", "lead_id": {"$in": [d["_id"] for d in ruled]}}) == 4

    r = await upload(api, manager, csv_file([["姓名", "手机", "标签"], ["池子", "13600009999", "expo"]]))
    report = await wait_done(api, manager, r.json["import_id"])
    assert report["allocate"] == "pool"
    doc = raw_db.leads.find_one({"source.import_id": r.json["import_id"]})
    assert doc["pool"] and doc.get("owner_id") is None, "the default stays: the team's pool"

    r = await upload(api, manager, csv_file(rows), allocate="lottery")
    assert r.status == 422 and r.json["error"]["details"][0]["field"] == "allocate", r.body
