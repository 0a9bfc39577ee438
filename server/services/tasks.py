"""Tasks (待办): things to do by a time, with reminders and an escalation ladder.

Scope like leads: a rep sees the tasks assigned to them, a manager their team's, an admin all;
anything else is "not found". A lead's ``next_followup_at`` keeps exactly one follow-up task for its
owner, ``_id = "followup:<lead id>"``, written whole by one replace-upsert (datetimes are never
``$set``), so the follow-up request stays within its command budget.

Each task carries ``reminders: {next_at}``: the time of the next rung of its reminder ladder (see
``rungs``). The ``send_due_reminders`` job reads only open tasks whose ``next_at`` has come, through
the ``(status, reminders.next_at)`` index, so its cost does not grow with tasks that are not due.
"""

from __future__ import annotations

import builtins
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from config.settings import Settings
from server.actor import Actor, scope_filter
from server.clock import Clock, as_utc
from server.errors import Conflict, Invalid, NotFound, VersionMismatch, detail
from server.ids import maybe_oid
from server.paging import Page, paginate
from server.schemas.tasks import TaskCreate, TaskQuery, TaskUpdate
from server.services.leads import LeadService
from server.services.notifications import NotificationService, notification

FOLLOWUP_PREFIX = "followup:"
CLOSED_LEAD_STAGES = ("lost", "churned")


def followup_task_id(lead_id: str) -> str:
    return f"{FOLLOWUP_PREFIX}{lead_id}"


def _may_be_assigned(actor: Actor, user: dict) -> bool:
    """An active staff member; of the actor's own team unless the actor is an admin."""
    if not (user.get("active", True) and user.get("role") in ("rep", "manager", "admin")):
        return False
    return actor.is_admin or (bool(actor.team_id) and str(user.get("team_id") or "") == actor.team_id)


class TaskService:
    def __init__(self, *, tasks, users_view, leads_view, clock: Clock, settings: Settings, notifications: NotificationService | None = None) -> None:
        self._col = tasks
        self._users = users_view  # read-only: assignees and the lead a task is about
        self._leads = leads_view
        self._clock = clock
        self._settings = settings
        self._notifications = notifications

    # ------------------------------------------------------------ scope
    @staticmethod
    def scope(actor: Actor) -> dict:
        return scope_filter(actor, "assignee_id")

    async def get(self, actor: Actor, task_id: str) -> dict:
        doc = await self._col.find_one({"_id": str(task_id)[:80], **self.scope(actor)})
        if doc is None:
            raise NotFound("task.not_found")
        return doc

    async def exists(self, task_id: str) -> bool:
        return await self._col.find_one({"_id": task_id}, {"_id": 1}) is not None

    # ------------------------------------------------------------ the reminder ladder
    def rungs(self, task: dict) -> list[tuple[str, datetime]]:
        """Every rung of a task's ladder as ``(name, at)``, earliest first."""
        s = self._settings
        due = as_utc(task["due_at"])
        out: list[tuple[str, datetime]] = []
        if task.get("remind_at"):
            out.append(("remind", as_utc(task["remind_at"])))
        if s.reminder_due_soon_min:
            out.append(("due_soon", due - timedelta(minutes=s.reminder_due_soon_min)))
        for name, days in (("overdue", s.escalation_remind_days), ("manager", s.escalation_manager_days), ("at_risk", s.escalation_at_risk_days)):
            if days:
                out.append((name, due + timedelta(days=days)))
        return sorted(out, key=lambda r: r[1])

    def first_check(self, task: dict, now: datetime) -> datetime | None:
        """When the job should first look at a (re)scheduled task: the latest rung already passed
        (so a task created late still gets its one most relevant reminder, not a burst), else the
        earliest one to come."""
        times = [at for _, at in self.rungs(task)]
        past = [at for at in times if at <= now]
        if past:
            return max(past)
        return min(times) if times else None

    def next_check(self, task: dict, now: datetime) -> datetime | None:
        later = [at for _, at in self.rungs(task) if at > now]
        return min(later) if later else None

    # ------------------------------------------------------------ create / list / update / complete
    async def _assignee(self, actor: Actor, assignee_id: str | None) -> dict:
        """The assignee's user document; outside the caller's team (or not active staff) → 422."""
        if assignee_id is None or assignee_id == actor.id:
            return {"_id": actor.id, "team_id": actor.team_id, "name": actor.name}
        oid = maybe_oid(assignee_id)
        user = await self._users.find_one({"_id": oid}, {"team_id": 1, "role": 1, "active": 1, "name": 1}) if oid else None
        if user is None or not _may_be_assigned(actor, user):
            raise Invalid("task.bad_assignee", details=[detail("assignee_id", "outside_team", text="task_assignee_outside_team")])
        return {"_id": str(user["_id"]), "team_id": str(user["team_id"]) if user.get("team_id") else None, "name": user.get("name", "")}

    @staticmethod
    def _check_times(due: datetime, remind: datetime | None) -> None:
        if remind is not None and remind > due:
            raise Invalid("task.remind_after_due", details=[detail("remind_at", "after_due", text="remind_after_due")])

    async def create(self, actor: Actor, data: TaskCreate, task_id: str | None = None) -> tuple[dict, bool]:
        self._check_times(data.due_at, data.remind_at)
        lead = None
        if data.lead_id:
            lead = await self._leads.find_one({"_id": data.lead_id, **LeadService.scope(actor)}, {"team_id": 1, "owner_id": 1})
            if lead is None:
                raise NotFound("lead.not_found")
        assignee = await self._assignee(actor, data.assignee_id)
        now = self._clock.now()
        doc: dict[str, Any] = {
            "_id": task_id or str(ObjectId()),
            "kind": "manual",
            "title": data.title,
            "lead_id": lead["_id"] if lead else None,
            "assignee_id": assignee["_id"],
            "team_id": assignee["team_id"] or (lead or {}).get("team_id"),
            "status": "open",
            "due_at": data.due_at,
            "remind_at": data.remind_at,
            "completed_at": None,
            "version": 1,
            "created_by": actor.id,
            "created_at": now,
            "updated_at": now,
        }
        doc["reminders"] = {"next_at": self.first_check(doc, now)}
        try:
            await self._col.insert_one(doc)
        except DuplicateKeyError:
            existing = await self._col.find_one({"_id": doc["_id"], "created_by": actor.id})
            if existing is None:
                raise Conflict("task.id_taken") from None
            return existing, False
        if assignee["_id"] != actor.id and self._notifications is not None:
            # Tell the assignee; delivery to WeChat is the outbox job's business, never this request's.
            await self._notifications.notify([notification(
                assignee["_id"], "task_assigned", f"新待办：{data.title}", f"{actor.name or '同事'} 给你安排了待办",
                f"task:{doc['_id']}:assigned", data={"task_id": doc["_id"], "lead_id": doc["lead_id"], "due_at": data.due_at.isoformat()},
            )], now)
        return doc, True

    async def list(self, actor: Actor, query: TaskQuery) -> Page:
        filter_: dict[str, Any] = dict(self.scope(actor))
        if query.status:
            filter_["status"] = query.status
        if query.due_before:
            filter_["due_at"] = {"$lt": query.due_before}
        return await paginate(self._col, filter_, limit=query.limit, cursor=query.cursor, sort_key="due_at", descending=False)

    async def update(self, actor: Actor, task_id: str, data: TaskUpdate, version: int) -> dict:
        task = await self.get(actor, task_id)
        if task["version"] != version:
            raise VersionMismatch("task.version_mismatch")
        if task.get("kind") == "followup":
            raise Conflict("task.managed_by_lead", details=[detail("lead_id", "followup", text="followup_task_follows_lead")])
        if task["status"] != "open":
            raise Conflict("task.closed")
        changes = data.model_dump(exclude_unset=True, exclude={"version"})  # TaskUpdate refuses null but for remind_at
        if "assignee_id" in changes:
            assignee = await self._assignee(actor, changes["assignee_id"])
            changes["team_id"] = assignee["team_id"] or task.get("team_id")
        new = {**task, **changes}
        self._check_times(as_utc(new["due_at"]), as_utc(new["remind_at"]) if new.get("remind_at") else None)
        now = self._clock.now()
        if "due_at" in changes or "remind_at" in changes:
            new["reminders"] = {"next_at": self.first_check(new, now)}
        return await self._replace(task, {**new, "updated_at": now})

    async def complete(self, actor: Actor, task_id: str, version: int | None) -> dict:
        task = await self.get(actor, task_id)
        if task["status"] == "done":
            return task  # completing twice (a phone retrying) changes nothing
        if version is not None and version != task["version"]:
            raise VersionMismatch("task.version_mismatch")
        now = self._clock.now()
        return await self._replace(task, {**task, "status": "done", "completed_at": now, "updated_at": now, "reminders": {"next_at": None}})

    async def _replace(self, task: dict, new: dict) -> dict:
        new = {**new, "version": task["version"] + 1}
        result = await self._col.replace_one({"_id": task["_id"], "version": task["version"]}, new)
        if result.matched_count != 1:
            raise VersionMismatch("task.version_mismatch")
        return new

    # ------------------------------------------------------------ the lead's follow-up task
    async def sync_followup_task(self, lead: dict, *, followup_logged: bool = False) -> None:
        """Keep the lead's one follow-up task in step with its ``next_followup_at``: exactly one
        database command. Open (upserted, same ``_id``) while the lead has an owner and a date;
        closed when a follow-up was logged without a new date, or the lead lost its owner or date.
        """
        due = lead.get("next_followup_at")
        owner = lead.get("owner_id")
        now = self._clock.now()
        task_id = followup_task_id(lead["_id"])
        opened = bool(due and owner and lead.get("stage") not in CLOSED_LEAD_STAGES and not followup_logged)
        doc: dict[str, Any] = {
            "_id": task_id,
            "kind": "followup",
            "title": f"跟进 {lead.get('name') or ''}".strip(),
            "lead_id": lead["_id"],
            "assignee_id": owner,
            "team_id": lead.get("team_id"),
            "status": "open" if opened else "done",
            "due_at": as_utc(due) if due else now,
            "remind_at": None,
            "completed_at": None if opened else now,
            "version": lead.get("version", 1),
            "created_by": "system",
            "created_at": now,
            "updated_at": now,
        }
        doc["reminders"] = {"next_at": self.first_check(doc, now) if opened else None}
        if opened:
            await self._col.replace_one({"_id": task_id}, doc, upsert=True)
        elif due or followup_logged:
            # Close an open one if there is one; nothing to close otherwise (matches 0).
            await self._col.replace_one({"_id": task_id, "status": "open"}, doc)

    async def close_followup_tasks(self, lead_ids: builtins.list[str]) -> None:
        """Close the follow-up tasks of leads that lost their owner (reclaim), in one command."""
        if lead_ids:
            await self._col.update_many(
                {"_id": {"$in": [followup_task_id(i) for i in lead_ids]}, "status": "open"},
                {"$set": {"status": "done", "reminders": {"next_at": None}}, "$currentDate": {"completed_at": True, "updated_at": True}, "$inc": {"version": 1}},
            )

    # ------------------------------------------------------------ tasks the system gives
    async def create_system_task(
        self, task_id: str, *, kind: str, title: str, lead: dict, assignee_id: str, due_at: datetime, now: datetime | None = None,
        notify_kind: str | None = "task_assigned", data: dict | None = None,
    ) -> bool:
        """A task the system gives a lead's owner (a churn signal, a return visit), under an id the
        caller derives from its cause, so the same cause never gives a second task (a retry, or a
        second instance, finds the first: False). The assignee is told, once."""
        now = now or self._clock.now()
        doc: dict[str, Any] = {
            "_id": task_id, "kind": kind, "title": title[:100], "lead_id": lead["_id"], "assignee_id": assignee_id,
            "team_id": lead.get("team_id"), "status": "open", "due_at": due_at, "remind_at": None, "completed_at": None,
            "version": 1, "created_by": "system", "created_at": now, "updated_at": now, **({"data": data} if data else {}),
        }
        doc["reminders"] = {"next_at": self.first_check(doc, now)}
        try:
            await self._col.insert_one(doc)
        except DuplicateKeyError:
            return False
        if notify_kind and self._notifications is not None:
            await self._notifications.notify([notification(
                assignee_id, notify_kind, f"新待办：{doc['title']}", "系统为你安排了待办", f"task:{task_id}:assigned",
                data={"task_id": task_id, "lead_id": lead["_id"], "due_at": due_at.isoformat()},
            )], now)
        return True

    # ------------------------------------------------------------ return visits (回访)
    async def ensure_tasks(self, docs: builtins.list[dict], now: datetime) -> int:
        """System tasks whose ``_id`` is their dedupe key (``return_visit:<contract>:<rung>``): each
        is created once, ever, however often (or on however many instances) a job offers it.
        Returns how many were new."""
        if not docs:
            return 0
        full = []
        for d in docs:
            doc = {"remind_at": None, "completed_at": None, "version": 1, "created_by": "system", "created_at": now, "updated_at": now, "status": "open", **d}
            doc["reminders"] = {"next_at": self.first_check(doc, now)}
            full.append(doc)
        try:
            result = await self._col.insert_many(full, ordered=False)
            return len(result.inserted_ids)
        except BulkWriteError as exc:
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                raise
            return int(exc.details.get("nInserted", 0))

    async def open_return_visit(self, lead_id: str, task_id: str) -> dict | None:
        """The lead's open return-visit task ``task_id``, if that is what it is."""
        return await self._col.find_one({"_id": str(task_id)[:120], "lead_id": lead_id, "kind": "return_visit", "status": "open"})

    async def complete_return_visits(self, lead_id: str, followup_id: str, task_id: str | None = None) -> int:
        """A return visit was recorded: its task (or, none named, the lead's open return-visit tasks)
        is done, linked to the follow-up. One command."""
        filter_: dict[str, Any] = {"lead_id": lead_id, "kind": "return_visit", "status": "open"}
        if task_id:
            filter_["_id"] = task_id
        result = await self._col.update_many(filter_, {
            "$set": {"status": "done", "followup_id": followup_id, "reminders": {"next_at": None}},
            "$currentDate": {"completed_at": True, "updated_at": True}, "$inc": {"version": 1},
        })
        return result.modified_count

    async def reassign_followup_tasks(self, lead_ids: builtins.list[str], owner_id: str) -> None:
        """The open follow-up tasks of leads that changed hands in bulk (a hand-over) follow the new
        owner, in one command."""
        if lead_ids:
            await self._col.update_many(
                {"_id": {"$in": [followup_task_id(i) for i in lead_ids]}, "status": "open"},
                {"$set": {"assignee_id": owner_id}, "$currentDate": {"updated_at": True}, "$inc": {"version": 1}},
            )

    async def hand_over(self, from_user_id: str, to_user_id: str, to_team_id: str | None, limit: int) -> int:
        """Up to ``limit`` open tasks of ``from_user_id`` (not follow-ups: they follow their lead) go
        to ``to_user_id``, whose team they join. Idempotent: a task moved is no longer the old
        assignee's. Returns how many moved."""
        ids = [t["_id"] for t in await self._col.find(
            {"assignee_id": from_user_id, "status": "open", "kind": {"$ne": "followup"}}, {"_id": 1}).limit(limit).to_list(None)]
        if not ids:
            return 0
        result = await self._col.update_many(
            {"_id": {"$in": ids}, "assignee_id": from_user_id, "status": "open"},
            {"$set": {"assignee_id": to_user_id, **({"team_id": to_team_id} if to_team_id else {})}, "$currentDate": {"updated_at": True}, "$inc": {"version": 1}},
        )
        return result.modified_count

    # ------------------------------------------------------------ for the reminder job
    async def due_for_reminders(self, now: datetime, limit: int) -> builtins.list[dict]:
        return await self._col.find({"status": "open", "reminders.next_at": {"$lte": now}}).sort("reminders.next_at", 1).limit(limit).to_list(None)

    async def mark_checked(self, checked: builtins.list[tuple[dict, datetime | None]], now: datetime) -> None:
        """Move each task's ``next_at`` on; skipped when the task changed meanwhile."""
        ops = [
            UpdateOne(
                {"_id": t["_id"], "version": t["version"], "status": "open"},
                {"$set": {"reminders": {"next_at": nxt, "checked_at": now}}},
            )
            for t, nxt in checked
        ]
        if ops:
            await self._col.bulk_write(ops, ordered=False)
