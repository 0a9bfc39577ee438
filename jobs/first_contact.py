"""The first-contact deadline (every minute): remind, escalate, then pool leads nobody contacted."""

from __future__ import annotations

from datetime import datetime

from jobs.registry import job
from server.context import AppContext


@job("first_contact", every_s=60, lease_s=120)
async def first_contact(ctx: AppContext, now: datetime) -> dict:
    """Assigned leads not followed up in time: remind the owner, tell the managers, back to the pool."""
    return await ctx.first_contact.run(now)
