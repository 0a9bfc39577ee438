"""Build the in-process APScheduler. Each instance has its own; leases coordinate them.

A run that raised (the database was down, say) is retried soon with back-off — 30 s, 60 s, 120 s …
and never later than half the job's interval — instead of waiting a whole interval (a day for the
daily jobs). The retry is the same scheduler job moved earlier, so it runs under its lease as usual
and never beside a regular run of the same job.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from jobs.registry import JOBS, load_jobs, run_job
from server.context import AppContext
from server.services.leases import LeaseService

log = logging.getLogger("mpcrm.jobs")

FIRST_RUN_WITHIN_S = 30
RETRY_BASE_S = 30.0
RETRY_MAX_S = 3600.0


def retry_delay(every_s: float, failures: int, base_s: float = RETRY_BASE_S, max_s: float = RETRY_MAX_S) -> float:
    """Seconds until the retry after ``failures`` failed runs in a row: doubling from ``base_s``,
    at most ``max_s`` and at most half the interval, so a retry always comes before the next run."""
    return min(base_s * 2 ** (max(1, failures) - 1), max_s, every_s / 2)


class JobRunner:
    """What the scheduler calls for each run: ``run_job`` under the lease, and on failure the
    same job moved to ``retry_delay`` from now."""

    def __init__(self, ctx: AppContext, scheduler: AsyncIOScheduler, leases: LeaseService, retry_base_s: float, retry_max_s: float) -> None:
        self.ctx = ctx
        self.scheduler = scheduler
        self.leases = leases
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.failures: dict[str, int] = {}

    async def run(self, name: str) -> dict | None:
        try:
            result = await run_job(self.ctx, name, leases=self.leases)
        except Exception as exc:  # any failure: log it and come back soon
            failures = self.failures[name] = self.failures.get(name, 0) + 1
            delay = retry_delay(JOBS[name].every_s, failures, self.retry_base_s, self.retry_max_s)
            log.warning(
                "job failed; retrying soon",
                exc_info=exc,
                extra={"job": name, "failures": failures, "retry_in_s": round(delay, 1), "error": type(exc).__name__},
            )
            with contextlib.suppress(JobLookupError):  # the scheduler is shutting down
                self.scheduler.modify_job(name, next_run_time=datetime.now(timezone.utc) + timedelta(seconds=delay))
            return None
        if self.failures.pop(name, None):
            log.info("job recovered", extra={"job": name})
        return result


def build_scheduler(
    ctx: AppContext, *, only: Iterable[str] | None = None, retry_base_s: float = RETRY_BASE_S, retry_max_s: float = RETRY_MAX_S
) -> AsyncIOScheduler:
    """Every job (or the ``only`` ones) runs soon after start-up, then at its interval. Without the
    early first run a daily job would never run on instances restarted more often than once a day;
    running it at start-up is safe because jobs are idempotent and leased."""
    scheduler = AsyncIOScheduler(timezone=ctx.settings.timezone, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30})
    leases = ctx.lease_service()
    runner = JobRunner(ctx, scheduler, leases, retry_base_s, retry_max_s)
    start = ctx.clock.now()
    wanted = set(only) if only is not None else None
    jobs = [d for d in load_jobs().values() if wanted is None or d.name in wanted]
    step = (FIRST_RUN_WITHIN_S - 4) / max(1, len(jobs))
    for index, definition in enumerate(jobs):
        scheduler.add_job(
            runner.run, "interval", seconds=definition.every_s, args=[definition.name],
            id=definition.name, name=definition.description,
            jitter=min(5, definition.every_s // 10),
            # Spread the first runs over the first half minute rather than all at once.
            next_run_time=start + timedelta(seconds=min(definition.every_s, 2 + index * step)),
        )
    return scheduler
