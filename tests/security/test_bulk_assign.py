"""Bulk assign probes: another team's leads by ids or by filter, forged ids, targets and rules of
another team. Leads outside the caller's scope are never assigned and never named, only counted."""

from __future__ import annotations

import uuid

import pytest
from bson import ObjectId

from allocation_kit import MONDAY_10, insert_waiting, make_rule, owners

ASSIGN = "/api/v1/leads/assign"


async def two_teams(ctx, people, raw_db):
    north, south = await people.team("华北销售部"), await people.team("华南销售部")
    manager = await people.manager(team="华北销售部")
    mine = await people.rep(team="华北销售部", name="北方")
    theirs = await people.rep(team="华南销售部", name="南方")
    north_leads = insert_waiting(raw_db, north, 2)
    south_leads = insert_waiting(raw_db, south, 3)
    await ctx.allocation.sweep(MONDAY_10)  # no rules: both teams' leads are in their pools
    return north, south, manager, mine, theirs, north_leads, south_leads


@pytest.mark.gen_test
async def test_another_teams_ids_are_skipped_unnamed_and_untouched(api, people, ctx, raw_db):
    north, south, manager, mine, theirs, north_leads, south_leads = await two_teams(ctx, people, raw_db)
    forged = [str(ObjectId()), str(uuid.uuid4())]
    before = {d["_id"]: d["version"] for d in raw_db.leads.find({"_id": {"$in": south_leads}})}
    for dry_run in (True, False):
        r = await api.post(ASSIGN, json={"ids": south_leads + forged + north_leads[:1], "to_user_id": mine.id, "dry_run": dry_run}, token=manager.token)
        assert r.status == 200, r.body
        assert r.json["requested"] == 6
        skipped = {s["reason"]: s for s in r.json["skipped"]}
        assert skipped["not_found"] == {"reason": "not_found", "count": 5, "lead_ids": []}, "another team's leads look like forged ids"
        assert all(i not in r.body.decode() for i in south_leads)
    assert set(owners(raw_db, south_leads).values()) == {None}
    assert {d["_id"]: d["version"] for d in raw_db.leads.find({"_id": {"$in": south_leads}})} == before, "not even touched"
    assert owners(raw_db, north_leads[:1]) == {north_leads[0]: mine.id}


@pytest.mark.gen_test
async def test_a_filter_never_reaches_another_team(api, people, ctx, raw_db):
    north, south, manager, mine, theirs, north_leads, south_leads = await two_teams(ctx, people, raw_db)
    r = await api.post(ASSIGN, json={"filter": {"team_id": south, "pool": True}, "to_user_id": mine.id}, token=manager.token)
    assert r.status == 200 and r.json["requested"] == 0 and r.json["assigned"] == 0, r.body
    for probe in ({"team_id": {"$ne": north}}, {"team_id": [south]}, {"$or": [{"team_id": south}]}):
        r = await api.post(ASSIGN, json={"filter": probe, "to_user_id": mine.id}, token=manager.token)
        assert r.status == 422, (probe, r.body)
    r = await api.post(ASSIGN, json={"filter": {"pool": True}, "to_user_id": mine.id}, token=manager.token)
    assert r.json["assigned"] == 2, r.body
    assert set(owners(raw_db, south_leads).values()) == {None}


@pytest.mark.gen_test
async def test_targets_and_rules_of_another_team_are_refused(api, people, ctx, raw_db):
    north, south, manager, mine, theirs, north_leads, south_leads = await two_teams(ctx, people, raw_db)
    r = await api.post(ASSIGN, json={"ids": north_leads, "to_user_id": theirs.id}, token=manager.token)
    assert r.status == 422 and r.error_code == "pool.bad_assignee", r.body
    south_rule = await make_rule(ctx, south, [theirs])
    r = await api.post(ASSIGN, json={"ids": north_leads, "rule_id": str(south_rule["_id"])}, token=manager.token)
    assert r.status == 404 and r.error_code == "allocation_rule.not_found"
    # an admin may reach every team, but a lead goes only to someone of its own team
    admin = await people.admin()
    r = await api.post(ASSIGN, json={"ids": north_leads + south_leads, "to_user_id": theirs.id}, token=admin.token)
    assert r.status == 200, r.body
    assert {s["reason"]: s["lead_ids"] for s in r.json["skipped"]} == {"other_team": north_leads}
    assert set(owners(raw_db, north_leads).values()) == {None}
    assert set(owners(raw_db, south_leads).values()) == {theirs.id}


@pytest.mark.gen_test
async def test_reps_and_customers_may_not_bulk_assign(api, people, ctx, raw_db, wechat):
    north, south, manager, mine, theirs, north_leads, south_leads = await two_teams(ctx, people, raw_db)
    customer = await people.customer(wechat[0])
    for person in (mine, customer):
        r = await api.post(ASSIGN, json={"ids": north_leads, "to_user_id": mine.id}, token=person.token)
        assert r.status == 403, r.body
    assert set(owners(raw_db, north_leads).values()) == {None}
