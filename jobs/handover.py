"""Hand-overs whose process stopped are continued."""

from __future__ import annotations

from datetime import datetime

from jobs.registry import job
from server.context import AppContext


@job("handover", every_s=60, lease_s=600)
async def handover(ctx: AppContext, now: datetime) -> dict:
    """Continue running hand-overs whose heartbeat is stale (their process died), batch by batch."""
    return await ctx.handover.resume_stalled(now)
