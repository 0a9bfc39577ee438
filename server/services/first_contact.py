"""The first-contact deadline (首次跟进时限): a lead given to a rep and not followed up in time.

**What starts it.** A lead *assigned* to someone: allocated by a rule (``allocate_to_owner``) or
given by a manager or admin (``LeadService.hand_over``), while it is in an open stage (new,
contacted, qualified). A claim from the pool is not an assignment (the rep chose the lead and is
expected to act on it; the pool's own rules apply), nor is a lead a rep captured themselves, nor a
hand-over of a departing rep's book. A new assignment starts a new deadline; the previous one ends.

**The steps**, each after N business hours from the assignment (team settings ``first_contact``:
``remind_after_h``, ``manager_after_h``, ``pool_after_h``; 0 skips a step; hours count only inside
the team's ``business_hours``, server/services/business_hours.py):

1. ``remind``: the owner is reminded (notification ``first_contact_reminder``) and the timeline
   gets ``first_contact_reminded``;
2. ``manager``: the team's managers are told (``first_contact_escalated``, the owner too) and the
   timeline gets ``first_contact_escalated``;
3. ``pool``: the lead goes back to its team's pool by the reclaim path (``LeadService.reclaim``,
   a ``reclaimed`` event with reason ``first_contact``, the owner's cool-down, their count and
   follow-up task), and the owner is told.

**What ends it.** The first follow-up logged on the lead (by anyone), the lead leaving the open
stages (lost, or a customer), or leaving its owner (released, reclaimed, claimed by another,
reassigned). The deadline is kept on the lead as ``first_contact`` = ``{owner_id, assigned_at,
at_ms, steps: {remind, manager, pool}, step, due_at}``; the job reads only leads whose ``due_at``
has come (index ``first_contact.due_at``), so its cost follows the work due, not the leads.

**Exactly once.** The ``first_contact`` job runs under its lease, and each step is also safe when
several runs race: a step's notifications have dedupe keys and its event an id derived from the
lead, the assignment and the step, so a step done twice writes once; the step then moves on by a
conditional update (``{_id, first_contact.at_ms, first_contact.step}``), and the pool move is the
reclaim's version-guarded write, of which one run wins. A batch costs a constant number of
commands, whatever its size.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from server.actor import SYSTEM
from server.clock import Clock, as_utc
from server.schemas.team_settings import TeamSettings
from server.services.business_hours import add_business_hours
from server.services.lead_store import derived_event_id, event
from server.services.lifecycle import OPEN_STAGES
from server.services.notifications import NotificationService, notification

if TYPE_CHECKING:
    from server.services.leads import LeadService
    from server.services.users import UserService

STEPS = ("remind", "manager", "pool")
EVENT_KINDS = {"remind": "first_contact_reminded", "manager": "first_contact_escalated"}
POOL_REASON = "first_contact"
BATCH = 500
MAX_BATCHES = 20
_FIELDS = {"owner_id": 1, "team_id": 1, "stage": 1, "name": 1, "version": 1, "cooldowns": 1, "locked": 1, "first_contact": 1}


def deadline(settings: TeamSettings, owner_id: str, now: datetime, tz: ZoneInfo) -> dict[str, Any] | None:
    """The deadline a lead assigned to ``owner_id`` at ``now`` gets, or None when the team has every
    step off. Step times are business hours after ``now``; a later step is never before an earlier."""
    rules = settings.first_contact
    hours = {"remind": rules.remind_after_h, "manager": rules.manager_after_h, "pool": rules.pool_after_h}
    steps: dict[str, datetime | None] = {}
    floor = now
    for step in STEPS:
        if hours[step] > 0:
            floor = max(floor, add_business_hours(now, hours[step], settings.business_hours, tz))
            steps[step] = floor
        else:
            steps[step] = None
    first = next((s for s in STEPS if steps[s] is not None), None)
    if first is None:
        return None
    return {"owner_id": owner_id, "assigned_at": now, "at_ms": int(now.timestamp() * 1000), "steps": steps, "step": first, "due_at": steps[first],
            "hours": hours}


def after(fc: dict[str, Any], step: str) -> dict[str, Any] | None:
    """The deadline once ``step`` is done: on to the next step that is on, or None (over)."""
    later = STEPS[STEPS.index(step) + 1:]
    nxt = next((s for s in later if (fc.get("steps") or {}).get(s) is not None), None)
    if nxt is None:
        return None
    return {**fc, "step": nxt, "due_at": fc["steps"][nxt]}


@dataclass
class _Due:
    lead: dict
    fc: dict
    step: str

    @property
    def key(self) -> str:
        return f"first-contact:{self.lead['_id']}:{self.fc['at_ms']}:{self.step}"


class FirstContactService:
    """The ``first_contact`` job: every step whose time has come, once (see the module docstring)."""

    def __init__(self, *, leads_view, clock: Clock, leads: LeadService, users: UserService, notifications: NotificationService) -> None:
        self._leads_col = leads_view  # read-only: the leads due; every write is LeadService's
        self._clock = clock
        self._leads = leads
        self._users = users
        self._notifications = notifications

    async def run(self, now: datetime) -> dict:
        stats = {"reminded": 0, "escalated": 0, "pooled": 0, "ended": 0, "skipped_changed": 0}
        for _ in range(MAX_BATCHES):
            batch = await self._leads_col.find({"first_contact.due_at": {"$lte": now}}, _FIELDS).limit(BATCH).to_list(None)
            if not batch:
                break
            await self._batch(batch, now, stats)
            if len(batch) < BATCH:
                break
        return stats

    async def _batch(self, batch: list[dict], now: datetime, stats: dict) -> None:
        ended: list[tuple[str, int, str, dict | None]] = []
        due: dict[str, list[_Due]] = {s: [] for s in STEPS}
        for lead in batch:
            fc = lead.get("first_contact") or {}
            step = fc.get("step")
            if step not in STEPS or "at_ms" not in fc:
                continue
            if lead.get("owner_id") != fc.get("owner_id") or lead.get("stage") not in OPEN_STAGES:
                ended.append((lead["_id"], fc["at_ms"], step, None))  # changed hands or left the open stages: nothing to chase
                continue
            if step == "pool" and lead.get("locked"):
                ended.append((lead["_id"], fc["at_ms"], step, None))  # locked leads never go back to the pool
                continue
            due[step].append(_Due(lead, fc, step))
        notes: list[dict] = []
        events: list[dict] = []
        advanced: list[tuple[str, int, str, dict | None]] = []
        managers = await self._users.active_managers([d.lead.get("team_id") for d in due["manager"]]) if due["manager"] else {}
        for d in due["remind"]:
            notes.append(notification(
                d.lead["owner_id"], "first_contact_reminder", f"请尽快首次跟进：{d.lead.get('name', '')}",
                f"分配后 {_hours(d.fc, 'remind')} 个工作小时内未跟进", d.key, data={"lead_id": d.lead["_id"], "step": "remind"},
            ))
            events.append(self._event(d, now, {"owner_id": d.lead["owner_id"], "hours": d.fc.get("hours", {}).get("remind")}))
            advanced.append((d.lead["_id"], d.fc["at_ms"], d.step, after(d.fc, d.step)))
        for d in due["manager"]:
            told = [m for m in managers.get(str(d.lead.get("team_id")), []) if m != d.lead["owner_id"]]
            hours = _hours(d.fc, "manager")
            notes.append(notification(
                d.lead["owner_id"], "first_contact_escalated", f"首次跟进已超时：{d.lead.get('name', '')}",
                f"分配后 {hours} 个工作小时内未跟进，已通知主管", d.key, data={"lead_id": d.lead["_id"], "step": "manager"},
            ))
            notes.extend(notification(
                m, "first_contact_escalated", f"下属首次跟进超时：{d.lead.get('name', '')}",
                f"分配后 {hours} 个工作小时内未跟进", f"{d.key}:{m}", data={"lead_id": d.lead["_id"], "step": "manager", "owner_id": d.lead["owner_id"]},
            ) for m in told)
            events.append(self._event(d, now, {"owner_id": d.lead["owner_id"], "managers": told, "hours": d.fc.get("hours", {}).get("manager")}))
            advanced.append((d.lead["_id"], d.fc["at_ms"], d.step, after(d.fc, d.step)))
        # Idempotent effects first (dedupe keys, derived event ids), then the conditional move on:
        # a run that stops in between is finished by the next one, and racing runs write once.
        await self._notifications.notify(notes, now)
        await self._leads.add_events_once(events)
        await self._leads.advance_first_contact(ended + advanced)
        stats["reminded"] += len(due["remind"])
        stats["escalated"] += len(due["manager"])
        stats["ended"] += len(ended)
        if due["pool"]:
            await self._pool(due["pool"], now, stats)

    async def _pool(self, items: list[_Due], now: datetime, stats: dict) -> None:
        cooldowns: dict[str, int] = {}
        for team_id in sorted({str(d.lead.get("team_id") or "") for d in items}):  # cached pool rules: no command per lead
            cooldowns[team_id] = int((await self._users.team_pool_settings(team_id or None)).get("release_cooldown_days") or 0)
        moved = await self._leads.reclaim([(d.lead, POOL_REASON) for d in items], cooldowns, now)
        stats["pooled"] += len(moved)
        stats["skipped_changed"] += len(items) - len(moved)
        fcs = {d.lead["_id"]: d for d in items}
        await self._notifications.notify([
            notification(lead["owner_id"], "lead_reclaimed", "线索已回收到公海",
                         f"{lead.get('name', '')}：分配后 {_hours(fcs[lead['_id']].fc, 'pool')} 个工作小时内未跟进"[:200],
                         fcs[lead["_id"]].key, data={"lead_id": lead["_id"], "reason": POOL_REASON})
            for lead in moved
        ], now)


    @staticmethod
    def _event(d: _Due, now: datetime, data: dict) -> dict:
        return event(d.lead["_id"], EVENT_KINDS[d.step], SYSTEM, {**data, "assigned_at": d.fc.get("assigned_at")},
                     at=now, event_id=derived_event_id(d.key, as_utc(d.fc["due_at"])))


def _hours(fc: dict, step: str) -> str:
    value = (fc.get("hours") or {}).get(step)
    return f"{value:g}" if isinstance(value, (int, float)) else "?"


__all__ = ["EVENT_KINDS", "POOL_REASON", "STEPS", "FirstContactService", "after", "deadline"]
