"""Report counters: fold the timeline into counters (every 10 s) and score RFM layers (daily)."""

from __future__ import annotations

from datetime import datetime

from jobs.registry import job
from server.context import AppContext


@job("fold_stats", every_s=10, lease_s=120)
async def fold_stats(ctx: AppContext, now: datetime) -> dict:
    """Fold new lead_events into the report counters (stats_cum, stats_current), exactly once."""
    return await ctx.stats.fold(now)


@job("rfm_layers", every_s=86400, lease_s=1800)
async def rfm_layers(ctx: AppContext, now: datetime) -> dict:
    """Score customers by recency, frequency and monetary value; write layer A/B/C on leads."""
    return await ctx.rfm.compute(now)


@job("count_overdue_tasks", every_s=60, lease_s=120)
async def count_overdue_tasks(ctx: AppContext, now: datetime) -> dict:
    """Count open tasks past due per rep and team, for the reps report (one read instead of many)."""
    return await ctx.stats.count_overdue(now)


@job("count_money", every_s=300, lease_s=600)
async def count_money(ctx: AppContext, now: datetime) -> dict:
    """Outstanding and overdue money per team and group, and the monthly customer cohorts, for the revenue and retention reports."""
    return await ctx.stats.count_money(now)
