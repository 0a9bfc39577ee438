"""Build the in-process APScheduler. Each instance has its own; leases coordinate them."""

from __future__ import annotations

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from jobs.registry import load_jobs, run_job
from server.context import AppContext
from server.services.leases import LeaseService


def build_scheduler(ctx: AppContext) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone=ctx.settings.timezone, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30})
    leases = LeaseService(ctx.db, ctx.clock)
    for definition in load_jobs().values():
        scheduler.add_job(
            run_job, "interval", seconds=definition.every_s, args=[ctx, definition.name],
            kwargs={"leases": leases}, id=definition.name, name=definition.description, jitter=min(5, definition.every_s // 10),
        )
    return scheduler
