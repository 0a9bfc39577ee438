"""Contract jobs: renewal reminders, contracts that end (customer → at_risk), payment reminders."""

from __future__ import annotations

from datetime import datetime

from jobs.registry import job
from server.context import AppContext


@job("renewal_reminders", every_s=86400, lease_s=300)
async def renewal_reminders(ctx: AppContext, now: datetime) -> dict:
    """Remind owners (and managers in the last week) to renew contracts that end soon."""
    return await ctx.contract_jobs.renewal_reminders(now)


@job("end_contracts", every_s=86400, lease_s=300)
async def end_contracts(ctx: AppContext, now: datetime) -> dict:
    """End contracts past their end date; a customer with no renewal becomes at_risk."""
    return await ctx.contract_jobs.end_contracts(now)


@job("payment_reminders", every_s=86400, lease_s=300)
async def payment_reminders(ctx: AppContext, now: datetime) -> dict:
    """Remind owners of instalments due soon and overdue (回款提醒)."""
    return await ctx.contract_jobs.payment_reminders(now)
