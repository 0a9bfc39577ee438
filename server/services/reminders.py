"""Reminders, the escalation ladder for overdue tasks, and churn warnings for silent customers.

Both are driven by jobs (``jobs/reminders.py``) with the ``now`` they are given. Every notification
has a dedupe key, so a job run twice for the same moment, or on two instances, notifies once:

* a task rung: ``task:<id>:<rung>@<epoch of the rung's time>`` (plus ``:<user>`` for the managers
  told on the manager and at-risk rungs). The time is part of the rung, so a task that is moved to
  a new due date is reminded again for the new date, and never twice for the same one.
* a churn threshold: ``churn:<lead>:<days>:<epoch of last_activity_at>`` — one per lead, threshold
  and silence period (a new follow-up starts a new period).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from collections.abc import Awaitable, Callable

from config.settings import Settings
from server.actor import SYSTEM
from server.clock import Clock, as_utc
from server.errors import ApiError
from server.schemas.team_settings import TeamSettings, TeamSettingsBook
from server.services.leads import LeadService
from server.services.lifecycle import allowed_targets
from server.services.notifications import NotificationService, notification
from server.services.tasks import TaskService

CHURN_STAGES = ("customer", "retained", "won_back")
REMINDER_BATCH = 500
CHURN_BATCH = 1000


class ReminderService:
    def __init__(self, *, users_view, leads_view, clock: Clock, settings: Settings, tasks: TaskService, leads: LeadService, notifications: NotificationService,
                 settings_book: Callable[[], Awaitable[TeamSettingsBook]]) -> None:
        self._settings_book = settings_book  # UserService.settings_book: every team's churn days, once per run
        self._users = users_view  # read-only: managers to tell, leads to look at; stage moves are LeadService's
        self._leads_col = leads_view
        self._clock = clock
        self._settings = settings
        self._tasks = tasks
        self._leads = leads
        self._notifications = notifications

    def _local(self, moment: datetime) -> str:
        return as_utc(moment).astimezone(self._settings.tz).strftime("%m-%d %H:%M")

    # ------------------------------------------------------------ tasks
    async def send_due_reminders(self, now: datetime) -> dict:
        """Every rung that has come for an open task, once. Reads only due work (indexed)."""
        due = await self._tasks.due_for_reminders(now, REMINDER_BATCH)
        if not due:
            return {"tasks": 0, "notified": 0, "flagged": 0}
        fired: list[tuple[dict, str, datetime]] = []
        for task in due:
            since = as_utc(task["reminders"]["next_at"])
            come = [(name, at) for name, at in self._tasks.rungs(task) if since <= at <= now]
            if come:  # several at once (the job was down, or the task was late): the latest one only
                fired.append((task, *come[-1]))
        escalated_teams = {t["team_id"] for t, name, _ in fired if name in ("manager", "at_risk") and t.get("team_id")}
        managers: dict[str, list[str]] = {}
        if escalated_teams:
            for user in await self._users.find({"team_id": {"$in": sorted(escalated_teams)}, "role": "manager", "active": True}, {"team_id": 1}).to_list(None):
                managers.setdefault(str(user["team_id"]), []).append(str(user["_id"]))
        at_risk_leads = sorted({t["lead_id"] for t, name, _ in fired if name == "at_risk" and t.get("lead_id")})
        leads = {d["_id"]: d for d in await self._leads_col.find({"_id": {"$in": at_risk_leads}}).to_list(None)} if at_risk_leads else {}
        items: list[dict[str, Any]] = []
        flagged = 0
        for task, name, at in fired:
            owner: Any = task.get("assignee_id")  # None when nobody is assigned: those items are dropped below
            key = f"task:{task['_id']}:{name}@{int(at.timestamp())}"
            data = {"task_id": task["_id"], "lead_id": task.get("lead_id"), "rung": name, "due_at": as_utc(task["due_at"]).isoformat()}
            title, due_text = task["title"], self._local(task["due_at"])
            if name == "remind":
                items.append(notification(owner, "task_reminder", f"待办提醒：{title}", f"截止 {due_text}", key, data=data))
            elif name == "due_soon":
                items.append(notification(owner, "task_reminder", f"待办即将到期：{title}", f"将于 {due_text} 到期", key, data=data))
            elif name == "overdue":
                items.append(notification(owner, "task_reminder", f"待办已逾期：{title}", f"已于 {due_text} 到期，请尽快处理", key, data=data))
            elif name == "manager":
                days = self._settings.escalation_manager_days
                items.append(notification(owner, "task_escalated", f"待办逾期 {days} 天：{title}", "已通知你的主管", key, data=data))
                items.extend(
                    notification(m, "task_escalated", f"下属待办逾期 {days} 天：{title}", f"截止 {due_text}，尚未完成", f"{key}:{m}", data=data)
                    for m in managers.get(str(task.get("team_id")), []) if m != owner
                )
            elif name == "at_risk":
                days = self._settings.escalation_at_risk_days
                lead = leads.get(task.get("lead_id"))
                moved = False
                if lead is not None and "at_risk" in allowed_targets(lead["stage"]):
                    try:
                        await self._leads.move_stage(lead, "at_risk", SYSTEM, reason={"zh-CN": f"待办逾期 {days} 天", "en": f"task overdue {days} days"})
                        moved = True
                        flagged += 1
                    except ApiError:
                        moved = False  # changed meanwhile (or another instance flagged it): just notify
                data = {**data, "suggest": "reassign", "lead_flagged": moved}
                body = "客户已标记为流失预警，建议重新分配" if moved else "建议重新分配该待办"
                items.append(notification(owner, "task_escalated", f"待办逾期 {days} 天：{title}", body, key, data=data))
                items.extend(
                    notification(m, "task_escalated", f"待办逾期 {days} 天，建议重新分配：{title}", body, f"{key}:{m}", data=data)
                    for m in managers.get(str(task.get("team_id")), []) if m != owner
                )
        items = [i for i in items if i["user_id"]]
        notified = await self._notifications.notify(items, now)
        await self._tasks.mark_checked([(t, self._tasks.next_check(t, now)) for t in due], now)
        return {"tasks": len(due), "notified": notified, "flagged": flagged}

    # ------------------------------------------------------------ churn
    @staticmethod
    def churn_threshold(lead: dict, team: TeamSettings) -> int:
        """The lead's churn days by its team's settings: by RFM ``layer`` when the team's
        ``rfm.drives_churn`` is set and the layer has days of its own, else by hand-set ``level``,
        else the team's ``churn.days``."""
        churn = team.churn
        layer = lead.get("layer")
        if team.rfm.drives_churn and layer in churn.days_by_layer:
            return churn.days_by_layer[layer]
        level = lead.get("level")
        return churn.days_by_level[level] if level in churn.days_by_level else churn.days

    async def churn_warnings(self, now: datetime) -> dict:
        """Customers silent past a warning threshold of their team are warned about; past their
        churn threshold (``churn_threshold``) they move to ``at_risk`` (a ``stage_changed`` event)
        and the owner is told. Every team's settings are read once per run."""
        book = await self._settings_book()
        shortest = min(d for t in book.all() for d in [*t.churn.warning_days, t.churn.days, *t.churn.days_by_level.values(), *t.churn.days_by_layer.values()])
        leads = await self._leads_col.find(
            {"stage": {"$in": list(CHURN_STAGES)}, "last_activity_at": {"$lte": now - timedelta(days=shortest)}},
            {"name": 1, "stage": 1, "owner_id": 1, "team_id": 1, "level": 1, "layer": 1, "last_activity_at": 1, "version": 1},
        ).limit(CHURN_BATCH).to_list(None)
        items: list[dict[str, Any]] = []
        churning: list[tuple[dict, str, dict]] = []  # (lead, key, data) past their level's threshold
        for lead in leads:
            last = as_utc(lead["last_activity_at"])
            silent = now - last
            team = book.of(lead.get("team_id"))
            threshold = self.churn_threshold(lead, team)
            crossed = sorted(d for d in [*team.churn.warning_days, threshold] if d <= threshold and silent >= timedelta(days=d))
            if not crossed:
                continue
            days = crossed[-1]  # only the highest threshold crossed: no burst of stale warnings
            key = f"churn:{lead['_id']}:{days}:{int(last.timestamp())}"
            data = {"lead_id": lead["_id"], "days": days, "silent_days": silent.days, "last_activity_at": last.isoformat()}
            if days == threshold:
                churning.append((lead, key, data))
            elif lead.get("owner_id"):
                items.append(notification(lead["owner_id"], "churn_warning", f"客户沉默提醒：{lead.get('name', '')}", f"已 {silent.days} 天未跟进，请尽快联系", key, data={**data, "moved": False}))
        moves = []
        for lead, key, data in churning:
            full = await self._leads_col.find_one({"_id": lead["_id"], "version": lead["version"]})
            if full is None:
                continue  # changed since the read; the next run looks again
            days, silent_days = data["days"], data["silent_days"]
            moves.append((full, "at_risk", {"zh-CN": f"已 {silent_days} 天未跟进（阈值 {days} 天）", "en": f"no follow-up for {silent_days} days (threshold {days})"}, lead, key, data))
        results = await self._leads.move_stages([(full, to, reason) for full, to, reason, *_ in moves], SYSTEM)
        moved = 0
        for (_, _, _, lead, key, data), result in zip(moves, results):
            if isinstance(result, ApiError):
                continue
            moved += 1
            if lead.get("owner_id"):
                items.append(notification(lead["owner_id"], "churn_warning", f"流失预警：{lead.get('name', '')}", f"已 {data['silent_days']} 天未跟进，已标记为流失预警", key, data={**data, "moved": True}))
        notified = await self._notifications.notify(items, now)
        return {"silent": len(leads), "moved": moved, "notified": notified}

