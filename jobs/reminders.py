"""Task reminders and the escalation ladder (every minute), churn warnings (daily)."""

from __future__ import annotations

from datetime import datetime

from jobs.registry import job
from server.context import AppContext


@job("send_due_reminders", every_s=60, lease_s=120)
async def send_due_reminders(ctx: AppContext, now: datetime) -> dict:
    """Task reminders at remind_at, due-soon reminders and the overdue escalation ladder."""
    return await ctx.reminders.send_due_reminders(now)


@job("churn_warnings", every_s=86400, lease_s=600)
async def churn_warnings(ctx: AppContext, now: datetime) -> dict:
    """Warn about silent customers; past their level's threshold move them to at_risk."""
    return await ctx.reminders.churn_warnings(now)
