"""Reclaim: with a frozen ``now`` the job moves exactly the leads idle past their team's
limits (per level), warns first (once), leaves exempt leads alone, applies the claim rule and the
cool-down, and the lead shows in the pool, on the timeline and as a sync deletion."""

from __future__ import annotations

from datetime import timedelta

import pytest

from allocation_kit import ADMIN
from jobs.registry import load_jobs, run_job
from leads_kit import LEADS, POOL, make_lead, open_leads, release, walk
from server.schemas.users import TeamUpdate

RECLAIM = {"no_followup_days": 7, "no_followup_days_by_level": {"A": 20, "B": 10}, "no_conversion_days": 15, "warn_days_before": 2}


async def set_rules(ctx, team_id: str) -> None:
    team = await ctx.users.get_team(ADMIN, team_id)
    await ctx.users.update_team(ADMIN, team_id, TeamUpdate.model_validate({"reclaim": RECLAIM, "pool": {"claim_daily_limit": 20, "release_cooldown_days": 7}}), team["version"])


async def to_customer(api, person, lead: dict) -> None:
    version = lead["version"]
    for stage in ("contacted", "qualified", "customer"):
        r = await api.post(f"{LEADS}/{lead['id']}/stage", json={"to": stage, "version": version}, token=person.token)
        assert r.status == 200, r.body
        version = r.json["version"]


def warned(raw_db) -> set[str]:
    return {n["data"]["lead_id"] for n in raw_db.notifications.find({"kind": "reclaim_warning"})}


def owner(raw_db, lead_id: str):
    return raw_db.leads.find_one({"_id": lead_id})["owner_id"]


@pytest.mark.gen_test(timeout=60)
async def test_reclaim_moves_exactly_the_idle_leads_warns_first_and_respects_exemptions(api, people, ctx, raw_db):
    load_jobs()
    admin = await people.admin()
    team = await people.team()
    await set_rules(ctx, team)
    rep, teammate = await people.rep(name="李雷"), await people.rep(name="韩梅梅")
    manager = await people.manager()
    plain = await make_lead(api, rep, name="无级别")          # 7 days
    level_c = await make_lead(api, rep, name="C级", level="C")  # no C entry: 7 days
    level_b = await make_lead(api, rep, name="B级", level="B")  # 10 days
    level_a = await make_lead(api, rep, name="A级", level="A")  # 20 days
    locked = await make_lead(api, rep, name="锁定")
    r = await api.patch(f"{LEADS}/{locked['id']}", json={"locked": True, "version": locked["version"]}, token=rep.token)
    assert r.status == 200, r.body
    customer = await make_lead(api, rep, name="客户")
    await to_customer(api, rep, customer)
    # claimed from the pool, level A (so only the claim rule can move it before day 20)
    claimed = await make_lead(api, teammate, name="认领", level="A")
    await release(api, teammate, claimed["id"])
    r = await api.post(f"{LEADS}/{claimed['id']}/claim", token=rep.token)
    assert r.status == 200, r.body
    r = await api.get("/api/v1/sync", token=rep.token)
    cursor = r.json["cursor"]
    assert (await open_leads(api, admin, rep.id)) == 6  # customer is not open

    base = max(d["touched_at"] for d in raw_db.leads.find({}, {"touched_at": 1}))
    day = lambda n: base + timedelta(days=n, hours=1)  # noqa: E731

    # day 6: two days before the 7-day limit → warned (once, even when the job runs twice)
    for _ in range(2):
        result = await run_job(ctx, "reclaim_stale_leads", day(6))
        assert result["reclaimed"] == 0
    assert warned(raw_db) == {plain["id"], level_c["id"]}
    assert raw_db.notifications.count_documents({"kind": "reclaim_warning"}) == 2
    assert all(n["user_id"] == rep.id for n in raw_db.notifications.find({"kind": "reclaim_warning"}))

    # day 8: the 7-day leads go back; the B lead (10 days) is warned now; nothing else moves
    result = await run_job(ctx, "reclaim_stale_leads", day(8))
    assert result["reclaimed"] == 2, result
    assert owner(raw_db, plain["id"]) is None and owner(raw_db, level_c["id"]) is None
    for kept in (level_b, level_a, locked, customer, claimed):
        assert owner(raw_db, kept["id"]) == rep.id, kept["name"]
    assert warned(raw_db) == {plain["id"], level_c["id"], level_b["id"]}
    assert (await open_leads(api, admin, rep.id)) == 4
    again = await run_job(ctx, "reclaim_stale_leads", day(8))
    assert again["reclaimed"] == 0 and raw_db.notifications.count_documents({"kind": "reclaim_warning"}) == 3

    # the reclaimed lead: in the pool, on the timeline, gone from the rep's phone on next sync
    pool = await walk(api, teammate.token, POOL)
    assert {plain["id"], level_c["id"]} <= {x["id"] for x in pool}
    r = await api.get(f"{LEADS}/{plain['id']}/timeline", token=manager.token)
    reclaimed = [e for e in r.json["items"] if e["kind"] == "reclaimed"]
    assert len(reclaimed) == 1 and reclaimed[0]["data"]["previous_owner_id"] == rep.id
    assert "no follow-up for 8 days (limit 7)" == reclaimed[0]["data"]["reason"]
    r = await api.get(f"/api/v1/sync?since={cursor}", token=rep.token)
    assert r.status == 200, r.body
    assert {plain["id"], level_c["id"]} <= set(r.json["deleted"])
    assert raw_db.notifications.count_documents({"kind": "lead_reclaimed", "user_id": rep.id}) == 2

    # cool-down: the previous owner may not claim it back; a teammate may
    r = await api.post(f"{LEADS}/{plain['id']}/claim", token=rep.token)
    assert r.status == 409 and r.error_code == "pool.cooldown", r.body
    r = await api.post(f"{LEADS}/{plain['id']}/claim", token=teammate.token)
    assert r.status == 200 and r.json["owner_id"] == teammate.id

    # day 10+: the B lead goes; day 16: the claimed lead is still not a customer (limit 15)
    result = await run_job(ctx, "reclaim_stale_leads", day(10))
    assert owner(raw_db, level_b["id"]) is None and owner(raw_db, claimed["id"]) == rep.id
    result = await run_job(ctx, "reclaim_stale_leads", day(16))
    assert owner(raw_db, claimed["id"]) is None
    event = raw_db.lead_events.find_one({"lead_id": claimed["id"], "kind": "reclaimed"})
    assert event["data"]["reason"] == "claimed 16 days ago and not converted (limit 15)"
    for kept in (level_a, locked, customer):
        assert owner(raw_db, kept["id"]) == rep.id, kept["name"]
    assert level_a["id"] not in warned(raw_db), "A leads are warned from day 18 only"
    result = await run_job(ctx, "reclaim_stale_leads", day(18))
    assert level_a["id"] in warned(raw_db) and owner(raw_db, level_a["id"]) == rep.id
    result = await run_job(ctx, "reclaim_stale_leads", day(40))
    assert owner(raw_db, level_a["id"]) is None
    assert owner(raw_db, locked["id"]) == rep.id and owner(raw_db, customer["id"]) == rep.id, "exempt however long"


@pytest.mark.gen_test(timeout=60)
async def test_a_team_whose_rfm_layer_drives_reclaim_keys_the_days_by_layer(api, people, ctx, raw_db):
    """Both teams give level A 20 days and B 10; the lead is level A with RFM layer B. In 华南
    (``rfm.drives_reclaim``) it goes back after 10 days, in 华北 it keeps its 20; a lead with no
    layer in 华南 still goes by its level."""
    from team_settings_kit import set_team_settings

    load_jobs()
    north, south = await people.team("华北销售部"), await people.team("华南销售部")
    for team in (north, south):
        await set_rules(ctx, team)
    await set_team_settings(ctx, south, rfm={"drives_reclaim": True})
    n_rep, s_rep = await people.rep(team="华北销售部"), await people.rep(team="华南销售部")
    n_lead, s_lead = await make_lead(api, n_rep, name="华北A", level="A"), await make_lead(api, s_rep, name="华南A", level="A")
    s_plain = await make_lead(api, s_rep, name="华南A无层", level="A")
    await ctx.leads.record_rfm([(n_lead["id"], "B", {"r": 2, "f": 1, "m": 1}), (s_lead["id"], "B", {"r": 2, "f": 1, "m": 1})])
    base = max(d["touched_at"] for d in raw_db.leads.find({}, {"touched_at": 1}))
    result = await run_job(ctx, "reclaim_stale_leads", base + timedelta(days=11, hours=1))
    assert result["reclaimed"] == 1, result
    assert owner(raw_db, s_lead["id"]) is None
    assert owner(raw_db, n_lead["id"]) == n_rep.id and owner(raw_db, s_plain["id"]) == s_rep.id
