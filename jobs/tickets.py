"""Tickets: dispatch what a request left undispatched, and the SLA steps (every minute)."""

from __future__ import annotations

from datetime import datetime

from jobs.registry import job
from server.context import AppContext


@job("ticket_sla", every_s=60, lease_s=120)
async def ticket_sla(ctx: AppContext, now: datetime) -> dict:
    """Ticket SLAs: due-soon reminders, breaches recorded and escalated to the managers, once."""
    dispatched = await ctx.tickets.dispatch_waiting(now)
    return {"dispatched": dispatched, **await ctx.tickets.check_sla(now)}
