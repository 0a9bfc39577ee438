"""Build the in-process APScheduler. Each instance has its own; leases coordinate them."""

from __future__ import annotations

from datetime import timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from jobs.registry import load_jobs, run_job
from server.context import AppContext
from server.services.leases import LeaseService

FIRST_RUN_WITHIN_S = 30


def build_scheduler(ctx: AppContext) -> AsyncIOScheduler:
    """Every job runs soon after start-up, then at its interval. Without the early first run a
    daily job would never run on instances restarted more often than once a day; running it at
    start-up is safe because jobs are idempotent and leased."""
    scheduler = AsyncIOScheduler(timezone=ctx.settings.timezone, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30})
    leases = LeaseService(ctx.db, ctx.clock)
    start = ctx.clock.now()
    jobs = list(load_jobs().values())
    step = (FIRST_RUN_WITHIN_S - 4) / max(1, len(jobs))
    for index, definition in enumerate(jobs):
        scheduler.add_job(
            run_job, "interval", seconds=definition.every_s, args=[ctx, definition.name],
            kwargs={"leases": leases}, id=definition.name, name=definition.description,
            jitter=min(5, definition.every_s // 10),
            # Spread the first runs over the first half minute rather than all at once.
            next_run_time=start + timedelta(seconds=min(definition.every_s, 2 + index * step)),
        )
    return scheduler
