"""The job registry: every scheduled job by name, with its schedule. Jobs are defined in code (no
shared APScheduler job store); ``run_job`` wraps each run in a lease so that of several instances
only one does the work, and everything a job writes is idempotent anyway.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from server.clock import FixedClock
from server.context import AppContext
from server.errors import NotFound
from server.services.leases import LeaseService

log = logging.getLogger("mpcrm.jobs")

JobFunc = Callable[[AppContext, datetime], Awaitable[dict]]


@dataclass(frozen=True)
class JobDef:
    name: str
    func: JobFunc
    every_s: int  # interval between runs
    lease_s: int  # longer than one run can take
    description: str


JOBS: dict[str, JobDef] = {}


def job(name: str, *, every_s: int, lease_s: int = 120) -> Callable[[JobFunc], JobFunc]:
    def register(func: JobFunc) -> JobFunc:
        JOBS[name] = JobDef(name, func, every_s, lease_s, (func.__doc__ or "").strip().splitlines()[0] if func.__doc__ else name)
        return func

    return register


def get_job(name: str) -> JobDef:
    """The job called ``name``; an unknown name is refused with the list of valid ones."""
    definition = JOBS.get(name)
    if definition is None:
        raise NotFound("job.unknown", params={"name": name, "valid": ", ".join(sorted(JOBS))})
    return definition


async def run_job(ctx: AppContext, name: str, now: datetime | None = None, leases: LeaseService | None = None) -> dict:
    """Run one job once under its lease. ``now`` freezes the clock of everything the job causes:
    the job runs on a context whose services all stamp their writes with it (the lease itself is
    held on the real clock, which other instances share)."""
    definition = get_job(name)
    leases = leases or ctx.lease_service()
    job_ctx = ctx.at(FixedClock(now)) if now else ctx
    if not await leases.acquire(f"job:{name}", definition.lease_s):
        log.info("job skipped: lease held elsewhere", extra={"job": name})
        return {"job": name, "skipped": "lease held by another instance"}
    started = time.monotonic()
    try:
        result = await definition.func(job_ctx, job_ctx.clock.now())
    finally:
        await leases.release(f"job:{name}")
    log.info("job done", extra={"job": name, "ms": round((time.monotonic() - started) * 1000, 1), "result": result})
    return {"job": name, **result}


def load_jobs() -> dict[str, JobDef]:
    """Import the job modules so their ``@job`` decorators register them."""
    import jobs.allocation  # noqa: F401
    import jobs.contracts  # noqa: F401
    import jobs.handover  # noqa: F401
    import jobs.first_contact  # noqa: F401
    import jobs.maintenance  # noqa: F401
    import jobs.outbox  # noqa: F401
    import jobs.reminders  # noqa: F401
    import jobs.reports  # noqa: F401
    import jobs.service  # noqa: F401
    import jobs.tickets  # noqa: F401

    return JOBS
