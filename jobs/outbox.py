"""Deliver the notification outbox as WeChat subscribe messages."""

from __future__ import annotations

from datetime import datetime

from jobs.registry import job
from server.context import AppContext


@job("deliver_outbox", every_s=30, lease_s=120)
async def deliver_outbox(ctx: AppContext, now: datetime) -> dict:
    """Send due notifications as WeChat subscribe messages (claims make it exactly-once)."""
    return await ctx.outbox.deliver_due(now)
