"""The scheduler every instance runs: every registered job, each soon after start-up."""

from __future__ import annotations

import pytest

from jobs.registry import load_jobs
from jobs.scheduler import FIRST_RUN_WITHIN_S, build_scheduler


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
