"""The scheduler every instance runs: every registered job, each soon after start-up, and a failed
run retried soon with back-off."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import pytest
from pymongo.errors import AutoReconnect

from jobs.registry import JOBS, job, load_jobs
from jobs.scheduler import FIRST_RUN_WITHIN_S, build_scheduler, retry_delay


@pytest.mark.gen_test
async def test_every_job_is_scheduled_and_runs_soon_after_start(ctx):
    scheduler = build_scheduler(ctx)
    scheduler.start(paused=True)
    try:
        jobs = {job.id: job for job in scheduler.get_jobs()}
        assert set(jobs) == set(load_jobs())
        start = ctx.clock.now()
        for job in jobs.values():
            # Daily jobs too: an instance restarted every few hours must still run them.
            assert (job.next_run_time - start).total_seconds() <= FIRST_RUN_WITHIN_S, job.id
    finally:
        scheduler.shutdown(wait=False)


# ---------------------------------------------------------------- a failed run is retried soon
@pytest.fixture
def flaky_job():
    """A daily job registered for one test: it records each run (and who held its lease then) and
    raises while ``failing`` says so, as a job does while the database is down."""
    state = {"runs": [], "failing": 1}

    @job("test_flaky_daily", every_s=86400)
    async def test_flaky_daily(ctx, now):
        """A daily job that fails at first."""
        lease = await ctx.db["leases"].find_one({"_id": "job:test_flaky_daily"})
        state["runs"].append((time.monotonic(), lease and lease["owner"]))
        if state["failing"]:
            state["failing"] -= 1
            raise AutoReconnect("connection refused (the database is down)")
        return {"done": len(state["runs"])}

    yield state
    JOBS.pop("test_flaky_daily", None)


async def _wait_for(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.mark.gen_test(timeout=30)
async def test_a_failed_daily_run_is_retried_soon_under_its_lease(ctx, flaky_job, captured_logs):
    scheduler = build_scheduler(ctx, only=["test_flaky_daily"], retry_base_s=0.5)
    scheduler.start()
    try:
        await _wait_for(lambda: len(flaky_job["runs"]) >= 2, timeout=10)
        (first, owner1), (second, owner2) = flaky_job["runs"][:2]
        assert second - first < 3, "the retry came within its delay, not a day later"
        assert owner1 and owner1 == owner2, "both runs held the job's lease"
        # after the success the job is back on its daily interval
        left = (scheduler.get_job("test_flaky_daily").next_run_time - datetime.now(timezone.utc)).total_seconds()
        assert left > 86400 - 60, left
    finally:
        scheduler.shutdown(wait=False)
    failed = [line for line in captured_logs() if "job failed; retrying soon" in line]
    assert failed and "test_flaky_daily" in failed[0] and "AutoReconnect" in failed[0]


@pytest.mark.gen_test(timeout=30)
async def test_retries_back_off_while_the_run_keeps_failing(ctx, flaky_job):
    flaky_job["failing"] = 3
    scheduler = build_scheduler(ctx, only=["test_flaky_daily"], retry_base_s=0.4)
    scheduler.start()
    try:
        await _wait_for(lambda: len(flaky_job["runs"]) >= 4, timeout=15)
    finally:
        scheduler.shutdown(wait=False)
    times = [t for t, _ in flaky_job["runs"][:4]]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert 0.3 < gaps[0] < 1.5 and gaps[1] > gaps[0] * 1.5 and gaps[2] > gaps[1] * 1.5, gaps


def test_retry_delay_doubles_and_stays_below_the_interval():
    assert [retry_delay(86400, n) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert retry_delay(86400, 30) == 3600, "at most an hour"
    assert retry_delay(30, 1) == 15 and retry_delay(30, 9) == 15, "always before the next regular run"
