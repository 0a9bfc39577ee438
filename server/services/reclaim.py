"""Reclaim (回收): leads nobody works go back to their team's pool before they go cold.

Per team (``team.reclaim``): a lead in an open stage goes back when it has had no follow-up for N
days since it was assigned or last touched (N may differ by level A/B/C), or when it was claimed M
days ago and is still not a customer. Locked leads are exempt, and so are customers (they are not
in an open stage). The owner is warned K days before; the previous owner then may not claim it
back during the team's cool-down. Each reclaim is a conditional write on the lead's version, so a
lead touched meanwhile is left alone, and warnings carry dedupe keys, so running the job twice
changes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from collections.abc import Awaitable, Callable

from server.clock import Clock
from server.schemas.team_settings import TeamSettingsBook
from server.schemas.users import PoolSettings, ReclaimSettings
from server.services.leads import LeadService
from server.services.lifecycle import OPEN_STAGES
from server.services.notifications import NotificationService, notification

_FIELDS = {"owner_id": 1, "stage": 1, "level": 1, "layer": 1, "locked": 1, "touched_at": 1, "assignment": 1, "cooldowns": 1, "version": 1, "name": 1, "team_id": 1}


class ReclaimService:
    def __init__(self, *, teams_view, leads_view, clock: Clock, leads: LeadService, notifications: NotificationService,
                 settings_book: Callable[[], Awaitable[TeamSettingsBook]]) -> None:
        self._settings_book = settings_book  # UserService.settings_book: whether the RFM layer drives reclaim, per team, once per run
        self._teams = teams_view  # read-only: teams' reclaim rules and leads to look at; the writes are LeadService's
        self._leads_col = leads_view
        self._clock = clock
        self._leads = leads
        self._notifications = notifications

    async def run(self, now: datetime) -> dict:
        stats = {"reclaimed": 0, "warned": 0, "skipped_changed": 0}
        book = await self._settings_book()
        async for team in self._teams.find({"active": True}, {"reclaim": 1, "pool": 1}):
            rules = ReclaimSettings.model_validate(team.get("reclaim") or {})
            if not rules.enabled:
                continue
            pool = PoolSettings.model_validate(team.get("pool") or {})
            by_layer = book.of(team["_id"]).rfm.drives_reclaim
            await self._team(str(team["_id"]), rules, pool, now, stats, by_layer)
        return stats

    async def _team(self, team_id: str, rules: ReclaimSettings, pool: PoolSettings, now: datetime, stats: dict, by_layer: bool = False) -> None:
        """``by_layer`` (the team's ``rfm.drives_reclaim``): the days per level are looked up by the
        lead's RFM ``layer`` instead of its hand-set ``level`` (a lead with no layer yet: its level)."""
        shortest = min([rules.no_followup_days, *rules.no_followup_days_by_level.values()])
        horizon = now - timedelta(days=max(shortest - rules.warn_days_before, 0))
        due: dict[str, tuple[dict, str]] = {}
        warnings: list[dict] = []
        async for lead in self._leads_col.find({"team_id": team_id, "touched_at": {"$lt": horizon}}, _FIELDS):
            if not _reclaimable(lead):
                continue
            level: Any = (by_layer and lead.get("layer")) or lead.get("level") or ""  # as stored; one with no rule of its own takes the default
            days = rules.no_followup_days_by_level.get(level, rules.no_followup_days)
            idle = now - lead["touched_at"]
            if idle >= timedelta(days=days):
                due[lead["_id"]] = (lead, f"no follow-up for {idle.days} days (limit {days})")
            elif idle >= timedelta(days=days - rules.warn_days_before):
                left = days - idle.days
                warnings.append(notification(
                    lead["owner_id"], "reclaim_warning", "线索即将回收",
                    f"{lead.get('name', '')}: 再 {left} 天无跟进将回收到公海", f"reclaim-warn:{lead['_id']}:{lead['touched_at'].isoformat()}",
                    data={"lead_id": lead["_id"], "days_left": left},
                ))
        if rules.no_conversion_days:
            cutoff = now - timedelta(days=rules.no_conversion_days)
            async for lead in self._leads_col.find({"team_id": team_id, "assignment.strategy": "claim", "assignment.at": {"$lt": cutoff}}, _FIELDS):
                if _reclaimable(lead) and lead["_id"] not in due:
                    due[lead["_id"]] = (lead, f"claimed {(now - lead['assignment']['at']).days} days ago and not converted (limit {rules.no_conversion_days})")
        stats["warned"] += await self._notifications.notify(warnings, now)
        await self._reclaim(list(due.values()), pool, now, stats)

    async def _reclaim(self, due: list[tuple[dict, str]], pool: PoolSettings, now: datetime, stats: dict) -> None:
        reclaimed = await self._leads.reclaim(due, pool.release_cooldown_days, now)
        stats["reclaimed"] += len(reclaimed)
        stats["skipped_changed"] += len(due) - len(reclaimed)
        reasons = {lead["_id"]: reason for lead, reason in due}
        await self._notifications.notify([
            notification(lead["owner_id"], "lead_reclaimed", "线索已回收", f"{lead.get('name', '')}: {reasons[lead['_id']]}"[:200],
                         f"reclaimed:{lead['_id']}:{lead['version']}", data={"lead_id": lead["_id"]})
            for lead in reclaimed
        ], now)

def _reclaimable(lead: dict[str, Any]) -> bool:
    return bool(lead.get("owner_id")) and lead.get("stage") in OPEN_STAGES and not lead.get("locked") and isinstance(lead.get("touched_at"), datetime)
