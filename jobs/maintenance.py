"""Housekeeping jobs."""

from __future__ import annotations

from datetime import datetime, timedelta

from jobs.registry import job
from server.context import AppContext


@job("purge_revoked_sessions", every_s=3600)
async def purge_revoked_sessions(ctx: AppContext, now: datetime) -> dict:
    """Delete refresh tokens revoked more than a day ago (expired ones go with the TTL index).

    Spent tokens are kept until they expire so that re-use is still detected; a revoked family
    needs no such watch, and the TTL index would otherwise keep it for weeks.
    """
    return {"deleted": await ctx.sessions.purge_revoked(now - timedelta(days=1))}


@job("fail_stalled_imports", every_s=300)
async def fail_stalled_imports(ctx: AppContext, now: datetime) -> dict:
    """Mark imports whose process died as failed (an import runs inside the process that took it)."""
    return {"failed": await ctx.imports.fail_stalled(now)}


@job("uploads_gc", every_s=3600)
async def uploads_gc(ctx: AppContext, now: datetime) -> dict:
    """Delete uploads attached to nothing for MPCRM_ATTACHMENT_UNATTACHED_HOURS (24), in bulk."""
    return {"deleted": await ctx.uploads.delete_unattached(now)}
