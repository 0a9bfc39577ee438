"""Filters that combine ``_id`` (or other keys) with a top-level ``$or`` in a write. nx-27017
drops the ``_id`` condition of such a filter when the ``$or`` mixes a datetime range with another
branch, and the write lands on another document (docs/mongodb-compat.md). Probed here as a user
would notice it: a lease overwritten by another lease of the same instance, a claim that takes a
lead the rep did not ask for."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from jobs.registry import load_jobs, run_job
from leads_kit import LEADS, make_lead, release
from server.actor import Actor
from server.clock import FixedClock, as_utc
from server.services.leases import LeaseService


@pytest.fixture
def clock():
    return FixedClock(datetime.now(timezone.utc).replace(microsecond=0))


@pytest.mark.gen_test
async def test_one_owner_holding_two_leases_keeps_both(ctx, clock, raw_db):
    mine = LeaseService(ctx.database.collection("leases"), clock, owner="instance-a")
    assert await mine.acquire("job:a", 600)
    before = raw_db.leases.find_one({"_id": "job:a"})
    clock.advance(seconds=5)
    assert await mine.acquire("job:b", 60)
    after = raw_db.leases.find_one({"_id": "job:a"})
    assert after == before, "acquiring job:b must not touch job:a"
    b = raw_db.leases.find_one({"_id": "job:b"})
    assert b is not None and b["owner"] == "instance-a"
    assert as_utc(b["lease_until"]) == clock.now() + timedelta(seconds=60)
    assert raw_db.leases.count_documents({}) == 2
    # another instance still finds job:a taken
    assert not await LeaseService(ctx.database.collection("leases"), clock, owner="instance-b").acquire("job:a", 60)


@pytest.mark.gen_test
async def test_a_job_run_leaves_the_other_leases_of_its_instance_alone(ctx, clock, raw_db):
    load_jobs()
    mine = LeaseService(ctx.database.collection("leases"), clock, owner="this-instance")
    assert await mine.acquire("job:fold_stats", 600)
    held = raw_db.leases.find_one({"_id": "job:fold_stats"})
    done = await run_job(ctx, "purge_revoked_sessions", leases=mine)
    assert done == {"job": "purge_revoked_sessions", "deleted": 0}
    assert raw_db.leases.find_one({"_id": "job:fold_stats"}) == held
    other = LeaseService(ctx.database.collection("leases"), clock, owner="other-instance")
    assert not await other.acquire("job:fold_stats", 60), "the first job's lease still holds"
    assert await other.acquire("job:purge_revoked_sessions", 60), "the finished job gave its lease back"


@pytest.mark.gen_test
async def test_claim_in_cooldown_does_not_take_another_pool_lead(api, ctx, clock, people, raw_db):
    rep = await people.rep()
    old = await make_lead(api, rep, name="早已放回")
    fresh = await make_lead(api, rep, name="刚放回")
    # `old` was released eight days ago: its cool-down (7 days) is over
    now = clock.now()
    clock.at = now - timedelta(days=8)
    await ctx.pool.release(Actor.from_user(rep.user), old["id"], "八天前放回")
    clock.at = now
    await release(api, rep, fresh["id"])

    r = await api.post(f"{LEADS}/{fresh['id']}/claim", token=rep.token)
    assert (r.status, r.error_code) == (409, "pool.cooldown"), r.body
    stored = raw_db.leads.find_one({"_id": old["id"]})
    assert stored["pool"] and stored["owner_id"] is None, "the other pool lead was claimed instead"
    assert raw_db.leads.find_one({"_id": fresh["id"]})["pool"]
    # and the lead whose cool-down is over is claimable on its own
    r = await api.post(f"{LEADS}/{old['id']}/claim", token=rep.token)
    assert r.status == 200 and r.json["id"] == old["id"] and r.json["owner_id"] == rep.id
