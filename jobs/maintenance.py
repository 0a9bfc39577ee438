"""Housekeeping jobs."""

from __future__ import annotations

from datetime import datetime, timedelta

from jobs.registry import job
from server.context import AppContext


@job("purge_revoked_sessions", every_s=3600)
async def purge_revoked_sessions(ctx: AppContext, now: datetime) -> dict:
    """Delete spent or revoked refresh tokens whose family can no longer be replayed profitably.

    Spent tokens are kept until they expire so re-use is still detected; expired ones go with the TTL
    index. This job removes revoked tokens older than a day, which the TTL index would keep for weeks.
    """
    result = await ctx.db["refresh_tokens"].delete_many({"revoked": True, "created_at": {"$lt": now - timedelta(days=1)}})
    return {"deleted": result.deleted_count}


@job("fail_stalled_imports", every_s=300)
async def fail_stalled_imports(ctx: AppContext, now: datetime) -> dict:
    """Mark imports whose process died as failed (an import runs inside the process that took it)."""
    return {"failed": await ctx.imports.fail_stalled(now)}
