"""The first-contact deadline: a lead assigned and not followed up is reminded to its owner, then
escalated to the team's managers, then sent back to the pool — each step once, on the timeline,
in business hours; a follow-up ends it; racing runs write once; a batch's commands do not grow
with its size."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from jobs.registry import load_jobs, run_job
from leads_kit import LEADS, POOL, make_lead, open_leads, walk
from server.clock import as_utc
from server.services.business_hours import add_business_hours


async def assigned(api, manager, rep, **fields) -> dict:
    """A lead the manager captured and gave to ``rep`` by hand."""
    lead = await make_lead(api, manager, **fields)
    r = await api.post(f"{LEADS}/{lead['id']}/assign", json={"owner_id": rep.id}, token=manager.token)
    assert r.status == 200, r.body
    return r.json


def deadline(raw_db, lead_id: str) -> dict | None:
    return raw_db.leads.find_one({"_id": lead_id})["first_contact"]


def kinds(raw_db, lead_id: str) -> list[str]:
    return [e["kind"] for e in raw_db.lead_events.find({"lead_id": lead_id}).sort("at", 1)]


@pytest.mark.gen_test(timeout=60)
async def test_remind_then_managers_then_pool_each_once_in_business_hours(api, people, ctx, raw_db):
    load_jobs()
    admin, manager, rep, other_manager = await people.admin(), await people.manager(), await people.rep(name="李雷"), await people.manager()
    lead = await assigned(api, manager, rep, name="王总")
    fc = deadline(raw_db, lead["id"])
    settings = await ctx.users.team_settings(rep.team_id)
    start = as_utc(fc["assigned_at"])
    week, tz = settings.business_hours, ctx.settings.tz
    # the default deadline: 4 / 8 / 24 business hours of a 09:00-18:00 Monday-Friday week
    assert [as_utc(fc["steps"][s]) for s in ("remind", "manager", "pool")] == [add_business_hours(start, h, week, tz) for h in (4, 8, 24)]
    assert fc["step"] == "remind" and fc["owner_id"] == rep.id
    at = {s: as_utc(fc["steps"][s]) for s in ("remind", "manager", "pool")}

    before = await run_job(ctx, "first_contact", at["remind"] - timedelta(minutes=1))
    assert before["reminded"] == 0 and "first_contact_reminded" not in kinds(raw_db, lead["id"])

    for _ in range(2):  # the same moment twice: once
        await run_job(ctx, "first_contact", at["remind"] + timedelta(minutes=1))
    reminders = list(raw_db.notifications.find({"kind": "first_contact_reminder"}))
    assert [n["user_id"] for n in reminders] == [rep.id]
    assert kinds(raw_db, lead["id"]).count("first_contact_reminded") == 1
    assert deadline(raw_db, lead["id"])["step"] == "manager"

    for _ in range(2):
        await run_job(ctx, "first_contact", at["manager"] + timedelta(minutes=1))
    told = sorted(n["user_id"] for n in raw_db.notifications.find({"kind": "first_contact_escalated"}))
    assert told == sorted([rep.id, manager.id, other_manager.id])
    assert kinds(raw_db, lead["id"]).count("first_contact_escalated") == 1

    for _ in range(2):
        await run_job(ctx, "first_contact", at["pool"] + timedelta(minutes=1))
    stored = raw_db.leads.find_one({"_id": lead["id"]})
    assert stored["owner_id"] is None and stored["first_contact"] is None
    assert lead["id"] in {x["id"] for x in await walk(api, manager.token, POOL)}
    assert stored["release"]["reason"] == "first_contact"
    events = await walk(api, manager.token, f"{LEADS}/{lead['id']}/timeline")
    pooled = [e for e in events if e["kind"] == "reclaimed"]
    assert len(pooled) == 1 and pooled[0]["data"] == {"previous_owner_id": rep.id, "reason": "first_contact"}
    assert raw_db.notifications.count_documents({"kind": "lead_reclaimed", "user_id": rep.id}) == 1
    assert await open_leads(api, admin, rep.id) == 0
    # the previous owner's cool-down applies as after any reclaim
    r = await api.post(f"{LEADS}/{lead['id']}/claim", token=rep.token)
    assert r.status == 409 and r.error_code == "pool.cooldown", r.body
    later = await run_job(ctx, "first_contact", at["pool"] + timedelta(days=30))
    assert later == {"job": "first_contact", "reminded": 0, "escalated": 0, "pooled": 0, "ended": 0, "skipped_changed": 0}


@pytest.mark.gen_test(timeout=60)
async def test_a_follow_up_ends_it_and_claims_or_own_leads_never_start_one(api, people, ctx, raw_db):
    load_jobs()
    manager, rep, teammate = await people.manager(), await people.rep(), await people.rep()
    lead = await assigned(api, manager, rep)
    far = as_utc(deadline(raw_db, lead["id"])["steps"]["pool"]) + timedelta(hours=1)
    r = await api.post(f"{LEADS}/{lead['id']}/followups", json={"kind": "call", "content": "打过了"}, token=rep.token)
    assert r.status == 201, r.body
    assert deadline(raw_db, lead["id"]) is None

    own = await make_lead(api, rep)  # captured by the rep: no deadline
    assert raw_db.leads.find_one({"_id": own["id"]}).get("first_contact") is None
    released = await make_lead(api, teammate)
    r = await api.post(f"{LEADS}/{released['id']}/release", json={"reason": "不是我的区域"}, token=teammate.token)
    assert r.status == 200, r.body
    r = await api.post(f"{LEADS}/{released['id']}/claim", token=rep.token)
    assert r.status == 200, r.body
    assert raw_db.leads.find_one({"_id": released["id"]}).get("first_contact") is None  # a claim is no assignment

    lost = await assigned(api, manager, rep)  # lost before anyone called: nothing to chase
    r = await api.post(f"{LEADS}/{lost['id']}/stage", json={"to": "lost", "reason_code": "no_need"}, token=rep.token)
    assert r.status == 200, r.body

    result = await run_job(ctx, "first_contact", far)
    assert result["reminded"] == result["escalated"] == result["pooled"] == 0 and result["ended"] == 1, result
    for lead_id in (lead["id"], own["id"], released["id"], lost["id"]):
        assert raw_db.leads.find_one({"_id": lead_id})["owner_id"] == rep.id
    assert raw_db.notifications.count_documents({"kind": {"$in": ["first_contact_reminder", "first_contact_escalated"]}}) == 0


@pytest.mark.gen_test(timeout=90)
async def test_racing_runs_write_each_step_once_and_a_batch_costs_constant_commands(api, people, ctx, raw_db, recorder):
    load_jobs()
    manager, rep = await people.manager(), await people.rep()
    few = [await assigned(api, manager, rep) for _ in range(2)]
    fc = deadline(raw_db, few[0]["id"])
    remind_at = as_utc(fc["steps"]["remind"]) + timedelta(minutes=1)
    with recorder.counting() as small:
        await ctx.first_contact.run(remind_at)
    many = [await assigned(api, manager, rep) for _ in range(12)]
    latest = max(as_utc(deadline(raw_db, x["id"])["steps"]["remind"]) for x in many) + timedelta(minutes=1)
    with recorder.counting() as large:
        await ctx.first_contact.run(latest)
    assert len(large) == len(small) and len(large) <= 6, (small, large)  # find, notify, events, advance
    assert raw_db.notifications.count_documents({"kind": "first_contact_reminder"}) == 14

    # three schedulers at once: without the lease (the conditional updates alone) and with it
    pool_at = max(as_utc(deadline(raw_db, x["id"])["steps"]["pool"]) for x in [*few, *many]) + timedelta(minutes=1)
    manager_at = max(as_utc(deadline(raw_db, x["id"])["steps"]["manager"]) for x in [*few, *many]) + timedelta(minutes=1)
    await asyncio.gather(*(ctx.first_contact.run(manager_at) for _ in range(3)))
    assert raw_db.lead_events.count_documents({"kind": "first_contact_escalated"}) == 14
    assert raw_db.notifications.count_documents({"kind": "first_contact_escalated", "user_id": manager.id}) == 14
    results = await asyncio.gather(*(run_job(ctx, "first_contact", pool_at) for _ in range(3)))
    assert sum(r.get("pooled", 0) for r in results) == 14, results
    again = await asyncio.gather(*(ctx.first_contact.run(pool_at) for _ in range(3)))
    assert sum(r["pooled"] for r in again) == 0
    assert raw_db.lead_events.count_documents({"kind": "reclaimed"}) == 14
    assert raw_db.lead_events.count_documents({"kind": "first_contact_reminded"}) == 14
    assert raw_db.notifications.count_documents({"kind": "lead_reclaimed"}) == 14
    assert raw_db.leads.count_documents({"owner_id": rep.id}) == 0
