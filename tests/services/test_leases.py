"""Leases: one instance at a time runs a job; an expired lease is taken over; ``run_job`` skips when
another instance holds the job's lease."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from jobs.registry import load_jobs, run_job
from server.actor import Actor
from server.clock import FixedClock, as_utc
from server.services.leases import LeaseService

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)


@pytest.fixture
def clock():
    return FixedClock(T0)


@pytest.mark.gen_test
async def test_live_lease_is_not_taken_by_another_owner(ctx, clock, raw_db):
    a = LeaseService(ctx.database.collection("leases"), clock, owner="instance-a")
    b = LeaseService(ctx.database.collection("leases"), clock, owner="instance-b")
    assert await a.acquire("job:x", 60)
    assert not await b.acquire("job:x", 60)
    clock.advance(seconds=59)
    assert not await b.acquire("job:x", 60)
    assert raw_db.leases.find_one({"_id": "job:x"})["owner"] == "instance-a"
    # the holder may renew its own lease
    assert await a.acquire("job:x", 60)
    clock.advance(seconds=59)
    assert not await b.acquire("job:x", 60), "a renewed lease runs from the renewal"
    assert raw_db.leases.count_documents({}) == 1


@pytest.mark.gen_test
async def test_expired_lease_is_taken_over(ctx, clock, raw_db):
    a = LeaseService(ctx.database.collection("leases"), clock, owner="instance-a")
    b = LeaseService(ctx.database.collection("leases"), clock, owner="instance-b")
    assert await a.acquire("job:x", 60)
    clock.advance(seconds=61)
    assert await b.acquire("job:x", 60)
    lease = raw_db.leases.find_one({"_id": "job:x"})
    assert lease["owner"] == "instance-b" and as_utc(lease["lease_until"]) == T0 + timedelta(seconds=121)
    assert not await a.acquire("job:x", 60), "the old holder lost it"


@pytest.mark.gen_test
async def test_release_frees_the_lease_for_others_only_by_its_holder(ctx, clock):
    a = LeaseService(ctx.database.collection("leases"), clock, owner="instance-a")
    b = LeaseService(ctx.database.collection("leases"), clock, owner="instance-b")
    assert await a.acquire("job:x", 600)
    await b.release("job:x")  # not b's to release
    assert not await b.acquire("job:x", 600)
    await a.release("job:x")
    assert await b.acquire("job:x", 600)


@pytest.mark.gen_test
async def test_leases_are_per_name(ctx, clock):
    a = LeaseService(ctx.database.collection("leases"), clock, owner="instance-a")
    b = LeaseService(ctx.database.collection("leases"), clock, owner="instance-b")
    assert await a.acquire("job:one", 60)
    assert await b.acquire("job:two", 60)


async def _revoked_session(ctx, people) -> None:
    """A refresh token revoked by logout: what ``purge_revoked_sessions`` deletes a day later."""
    rep = await people.rep()
    await ctx.auth.logout(Actor.from_user(rep.user), rep.refresh_token)


@pytest.mark.gen_test
async def test_run_job_skips_when_lease_is_held_elsewhere(ctx, people, clock, raw_db):
    load_jobs()
    await _revoked_session(ctx, people)
    assert raw_db.refresh_tokens.count_documents({"revoked": True}) == 1
    other = LeaseService(ctx.database.collection("leases"), clock, owner="other-instance")
    mine = LeaseService(ctx.database.collection("leases"), clock, owner="this-instance")
    assert await other.acquire("job:purge_revoked_sessions", 120)

    later = T0 + timedelta(days=2)
    skipped = await run_job(ctx, "purge_revoked_sessions", later, leases=mine)
    assert skipped["job"] == "purge_revoked_sessions" and "skipped" in skipped
    assert raw_db.refresh_tokens.count_documents({"revoked": True}) == 1, "a skipped job does no work"
    assert raw_db.leases.find_one({"_id": "job:purge_revoked_sessions"})["owner"] == "other-instance"

    clock.advance(seconds=121)  # the other instance died; its lease ran out
    done = await run_job(ctx, "purge_revoked_sessions", later, leases=mine)
    assert done == {"job": "purge_revoked_sessions", "deleted": 1}
    assert raw_db.refresh_tokens.count_documents({"revoked": True}) == 0
    # and it gave the lease back when it finished
    assert await other.acquire("job:purge_revoked_sessions", 120)


@pytest.mark.gen_test
async def test_run_job_unknown_name(ctx):
    from server.errors import NotFound

    load_jobs()
    with pytest.raises(NotFound) as caught:
        await run_job(ctx, "nope")
    assert caught.value.code == "job.unknown"
