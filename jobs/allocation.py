"""Allocation jobs: give waiting leads an owner; pull untouched leads back to the pool."""

from __future__ import annotations

from datetime import datetime

from jobs.registry import job
from server.context import AppContext


@job("allocate_new_leads", every_s=30, lease_s=120)
async def allocate_new_leads(ctx: AppContext, now: datetime) -> dict:
    """Allocate every lead still waiting for an owner (a safety net for allocation at capture)."""
    return await ctx.allocation.sweep(now)


@job("reclaim_stale_leads", every_s=3600, lease_s=900)
async def reclaim_stale_leads(ctx: AppContext, now: datetime) -> dict:
    """Send untouched leads back to their team's pool, warning owners first (team.reclaim rules)."""
    return await ctx.reclaim.run(now)
