"""After-sale jobs (daily): return-visit tasks (回访) and surveys after a contract starts."""

from __future__ import annotations

from datetime import datetime

from jobs.registry import job
from server.context import AppContext


@job("return_visits", every_s=86400, lease_s=600)
async def return_visits(ctx: AppContext, now: datetime) -> dict:
    """Return-visit tasks for owners: N days after a contract starts and before it ends (once each)."""
    return await ctx.after_sale.return_visits(now)


@job("contract_surveys", every_s=86400, lease_s=600)
async def contract_surveys(ctx: AppContext, now: datetime) -> dict:
    """Satisfaction surveys to customers N days after their contract starts (team setting)."""
    return await ctx.after_sale.contract_surveys(now)
