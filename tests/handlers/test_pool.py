"""The team's public pool (公海): release, claim races, capacity, daily limits, cool-down, assignment,
and the per-rep open-lead counter that capacity relies on."""

from __future__ import annotations

import asyncio

import pytest

from leads_kit import LEADS, POOL, make_lead, open_leads, pool_lead, release


async def _limited_team(api, admin, name: str, **pool) -> str:
    r = await api.post("/api/v1/teams", json={"name": name, "pool": pool}, token=admin.token)
    assert r.status == 201, r.body
    assert r.json["pool"]["claim_daily_limit"] == pool.get("claim_daily_limit", 20)
    return r.json["id"]


@pytest.mark.gen_test
async def test_release_needs_a_reason_and_lands_in_the_team_pool_only(api, people, raw_db):
    rep = await people.rep()
    teammate = await people.rep()
    outsider = await people.rep(team="华南销售部")
    lead = await make_lead(api, rep, name="放回公海")
    for body in ({}, {"reason": ""}, {"reason": "   "}):
        r = await api.post(f"{LEADS}/{lead['id']}/release", json=body, token=rep.token)
        assert r.status == 422, (body, r.body)
    assert raw_db.leads.find_one({"_id": lead["id"]})["owner_id"] == rep.id

    released = await release(api, rep, lead["id"], reason="客户暂无预算")
    assert released["pool"] is True and released["owner_id"] is None
    r = await api.get(POOL, token=teammate.token)
    assert [x["id"] for x in r.json["items"]] == [lead["id"]]
    assert "notes" not in r.json["items"][0]
    r = await api.get(POOL, token=outsider.token)
    assert r.status == 200 and r.json["items"] == []
    r = await api.post(f"{LEADS}/{lead['id']}/claim", token=outsider.token)
    assert r.status == 404
    # gone from the releaser's own list, on the timeline with the reason
    r = await api.get(LEADS, token=rep.token)
    assert r.json["items"] == []
    admin = await people.admin()
    r = await api.get(f"{LEADS}/{lead['id']}/timeline", token=admin.token)
    top = r.json["items"][0]
    assert top["kind"] == "released" and top["data"]["reason"] == "客户暂无预算" and top["actor_id"] == rep.id


@pytest.mark.gen_test
async def test_two_reps_claiming_at_once_one_wins(api, people, raw_db, recorder):
    owner = await people.rep()
    a = await people.rep()
    b = await people.rep()
    admin = await people.admin()
    lead = await pool_lead(api, owner, name="抢单")
    # a plain claim, after a release on this instance (the team's pool rules are cached)
    released = await pool_lead(api, owner)
    with recorder.counting() as cmds:
        r = await api.post(f"{LEADS}/{released['id']}/claim", token=a.token)
    # reserve the slot, take the lead, its tickets and its surveys follow the new owner, the event
    assert r.status == 200 and len(cmds) <= 5, cmds
    assert r.json["owner_id"] == a.id and r.json["assignment"]["strategy"] == "claim"
    before = {a.id: 1, b.id: 0}
    assert await open_leads(api, admin, a.id) == 1 and await open_leads(api, admin, b.id) == 0

    results = await asyncio.gather(*[api.post(f"{LEADS}/{lead['id']}/claim", token=p.token) for p in (a, b)])
    statuses = sorted(r.status for r in results)
    assert statuses == [200, 409], [r.body for r in results]
    loser = next(r for r in results if r.status == 409)
    assert loser.error_code == "pool.claim_lost"
    winner = a if results[0].status == 200 else b
    other = b if winner is a else a
    stored = raw_db.leads.find_one({"_id": lead["id"]})
    assert stored["owner_id"] == winner.id and not stored["pool"]
    assert await open_leads(api, admin, winner.id) == before[winner.id] + 1
    assert await open_leads(api, admin, other.id) == before[other.id]  # the loser's reservation was given back
    r = await api.get(POOL, token=a.token)
    assert lead["id"] not in [x["id"] for x in r.json["items"]]


@pytest.mark.gen_test
async def test_capacity_is_enforced(api, people, raw_db):
    owner = await people.rep()
    full = await people.rep(capacity=1)
    await make_lead(api, full, name="已有一个")
    lead = await pool_lead(api, owner, name="装不下")
    r = await api.post(f"{LEADS}/{lead['id']}/claim", token=full.token)
    assert r.status == 409 and r.error_code == "pool.at_capacity", r.body
    assert raw_db.leads.find_one({"_id": lead["id"]})["pool"]
    spare = await people.rep(capacity=1)
    r = await api.post(f"{LEADS}/{lead['id']}/claim", token=spare.token)
    assert r.status == 200 and r.json["owner_id"] == spare.id


@pytest.mark.gen_test
async def test_daily_claim_limit(api, people, raw_db):
    admin = await people.admin()
    team_id = await _limited_team(api, admin, "限额团队", claim_daily_limit=1)
    people._teams["限额团队"] = team_id
    owner = await people.rep(team="限额团队")
    claimer = await people.rep(team="限额团队")
    first = await pool_lead(api, owner, name="第一个")
    second = await pool_lead(api, owner, name="第二个")
    r = await api.post(f"{LEADS}/{first['id']}/claim", token=claimer.token)
    assert r.status == 200, r.body
    r = await api.post(f"{LEADS}/{second['id']}/claim", token=claimer.token)
    assert r.status == 409 and r.error_code == "pool.daily_limit", r.body
    assert raw_db.leads.find_one({"_id": second["id"]})["pool"]
    assert await open_leads(api, admin, claimer.id) == 1
    other = await people.rep(team="限额团队")
    r = await api.post(f"{LEADS}/{second['id']}/claim", token=other.token)
    assert r.status == 200


@pytest.mark.gen_test
async def test_releaser_is_in_cooldown_but_others_may_claim(api, people, raw_db):
    rep = await people.rep()
    other = await people.rep()
    admin = await people.admin()
    lead = await pool_lead(api, rep, name="冷却")
    r = await api.post(f"{LEADS}/{lead['id']}/claim", token=rep.token)
    assert r.status == 409 and r.error_code == "pool.cooldown", r.body
    assert raw_db.leads.find_one({"_id": lead["id"]})["pool"]
    assert await open_leads(api, admin, rep.id) == 0
    r = await api.post(f"{LEADS}/{lead['id']}/claim", token=other.token)
    assert r.status == 200 and r.json["owner_id"] == other.id


@pytest.mark.gen_test
async def test_manager_assigns_within_the_team(api, people, raw_db):
    rep = await people.rep()
    teammate = await people.rep()
    outsider = await people.rep(team="华南销售部")
    manager = await people.manager()
    lead = await pool_lead(api, rep, name="派单")
    r = await api.post(f"{LEADS}/{lead['id']}/assign", json={"owner_id": teammate.id, "reason": "熟悉该行业"}, token=rep.token)
    assert r.status == 403
    r = await api.post(f"{LEADS}/{lead['id']}/assign", json={"owner_id": outsider.id, "reason": "跨组"}, token=manager.token)
    assert r.status == 422 and r.error_code == "pool.bad_assignee", r.body
    assert raw_db.leads.find_one({"_id": lead["id"]})["owner_id"] is None
    r = await api.post(f"{LEADS}/{lead['id']}/assign", json={"owner_id": teammate.id, "reason": "熟悉该行业"}, token=manager.token)
    assert r.status == 200, r.body
    assert r.json["owner_id"] == teammate.id and r.json["pool"] is False
    assert r.json["assignment"]["strategy"] == "manual" and r.json["assignment"]["reason"] == "熟悉该行业"
    r = await api.get(f"{LEADS}/{lead['id']}", token=teammate.token)
    assert r.status == 200
    r = await api.get(f"{LEADS}/{lead['id']}/timeline", token=manager.token)
    top = r.json["items"][0]
    assert top["kind"] == "assigned" and top["actor_id"] == manager.id and top["data"]["reason"] == "熟悉该行业"
    # a manager of another team cannot reach it at all
    other_manager = await people.manager(team="华南销售部")
    r = await api.post(f"{LEADS}/{lead['id']}/assign", json={"owner_id": outsider.id}, token=other_manager.token)
    assert r.status == 404
    assert raw_db.leads.find_one({"_id": lead["id"]})["owner_id"] == teammate.id


@pytest.mark.gen_test
async def test_open_leads_counter_follows_claim_release_assign_and_conversion(api, people):
    a = await people.rep()
    b = await people.rep()
    manager = await people.manager()
    admin = await people.admin()

    async def counts() -> tuple[int, int]:
        return await open_leads(api, admin, a.id), await open_leads(api, admin, b.id)

    x = await make_lead(api, a, name="甲")
    y = await make_lead(api, a, name="乙")
    assert await counts() == (2, 0)
    await release(api, a, x["id"])
    assert await counts() == (1, 0)
    r = await api.post(f"{LEADS}/{x['id']}/claim", token=b.token)
    assert r.status == 200
    assert await counts() == (1, 1)
    r = await api.post(f"{LEADS}/{y['id']}/assign", json={"owner_id": b.id, "reason": "调整"}, token=manager.token)
    assert r.status == 200
    assert await counts() == (0, 2)
    for to in ("contacted", "qualified", "customer"):
        r = await api.post(f"{LEADS}/{y['id']}/stage", json={"to": to}, token=b.token)
        assert r.status == 200, r.body
    assert await counts() == (0, 1)  # a customer is no longer an open lead
    # a customer released and claimed back does not count as open either
    await release(api, b, y["id"], reason="交给服务组")
    assert await counts() == (0, 1)
    r = await api.post(f"{LEADS}/{y['id']}/claim", token=a.token)
    assert r.status == 200
    assert await counts() == (0, 1)
    # a lead marked lost frees a slot
    r = await api.post(f"{LEADS}/{x['id']}/stage", json={"to": "lost", "reason": "无需求"}, token=b.token)
    assert r.status == 200
    assert await counts() == (0, 0)


@pytest.mark.gen_test
async def test_the_followup_task_follows_the_lead_to_its_new_owner_and_closes_on_release(api, people, raw_db):
    from datetime import datetime, timedelta, timezone

    rep, other, mgr = await people.rep(), await people.rep(), await people.manager()
    soon = (datetime.now(timezone.utc) + timedelta(days=1)).replace(microsecond=0).isoformat()
    r = await api.post("/api/v1/leads", json={"name": "随访客户", "next_followup_at": soon}, token=rep.token)
    assert r.status == 201, r.body
    lead_id = r.json["id"]
    task = raw_db.tasks.find_one({"lead_id": lead_id})
    assert task["assignee_id"] == rep.id and task["status"] == "open"
    r = await api.post(f"/api/v1/leads/{lead_id}/assign", json={"owner_id": other.id}, token=mgr.token)
    assert r.status == 200, r.body
    task = raw_db.tasks.find_one({"lead_id": lead_id})
    assert task["assignee_id"] == other.id and task["status"] == "open"
    assert raw_db.tasks.count_documents({"lead_id": lead_id}) == 1
    r = await api.post(f"/api/v1/leads/{lead_id}/release", json={"reason": "不跟了"}, token=other.token)
    assert r.status == 200, r.body
    assert raw_db.tasks.find_one({"lead_id": lead_id})["status"] == "done"


@pytest.mark.gen_test
async def test_patching_one_pool_or_reclaim_setting_keeps_the_others(api, people):
    """A PATCH that names one setting of `pool` or `reclaim` changes that one only; the others
    keep what the admin set before (they once fell back to the defaults)."""
    admin = await people.admin()
    r = await api.post("/api/v1/teams", json={"name": "设置团队", "pool": {"claim_daily_limit": 3, "release_cooldown_days": 30},
                                               "reclaim": {"no_followup_days": 14, "warn_days_before": 5}}, token=admin.token)
    assert r.status == 201, r.body
    team = r.json
    r = await api.patch(f"/api/v1/teams/{team['id']}", json={"pool": {"claim_daily_limit": 5}, "reclaim": {"enabled": False}, "version": team["version"]}, token=admin.token)
    assert r.status == 200, r.body
    assert r.json["pool"] == {"claim_daily_limit": 5, "release_cooldown_days": 30}
    assert r.json["reclaim"]["enabled"] is False
    assert r.json["reclaim"]["no_followup_days"] == 14 and r.json["reclaim"]["warn_days_before"] == 5
    r = await api.get(f"/api/v1/teams/{team['id']}", token=admin.token)
    assert r.json["pool"] == {"claim_daily_limit": 5, "release_cooldown_days": 30}
