"""Follow-ups: calls, visits with a location check-in, WeChat chats, meetings and notes.

A follow-up is stored as the lead's ``followup`` timeline event (``lead_events``), so recording it
and its timeline entry is one write. It bumps the lead's ``last_activity_at``, sets its
``next_followup_at`` when given, and moves a ``new`` lead to ``contacted``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bson import ObjectId
from pymongo.errors import BulkWriteError

from server.actor import Actor
from server.clock import Clock
from server.errors import Invalid, NotFound, VersionMismatch, detail
from server.schemas.leads import FollowupCreate
from server.services.leads import LeadService, event

MAX_AHEAD = timedelta(days=366)
MAX_BACKDATE = timedelta(days=30)


class FollowupService:
    def __init__(self, *, lead_events_view, clock: Clock, leads: LeadService, tasks=None, uploads=None) -> None:
        self._events = lead_events_view  # read-only: a repeated follow-up is found here; writes go through LeadService
        self._uploads = uploads  # UploadService: a follow-up's attachments, readable by whoever reads the lead's timeline
        if uploads is not None:
            uploads.register_access("followup", self.readable)
        self._tasks = tasks  # TaskService: the lead's follow-up task
        self._clock = clock
        self._leads = leads

    async def add(self, actor: Actor, lead_id: str, data: FollowupCreate) -> tuple[dict, bool]:
        now = self._clock.now()
        errors = []
        if data.kind == "visit" and data.location is None:
            errors.append(detail("location", "required", text="visit_location_required"))
        if data.next_followup_at is not None and not (now - timedelta(minutes=5) <= data.next_followup_at <= now + MAX_AHEAD):
            errors.append(detail("next_followup_at", "out_of_range", text="within_coming_year"))
        occurred = data.occurred_at or now
        if not (now - MAX_BACKDATE <= occurred <= now + timedelta(minutes=5)):
            errors.append(detail("occurred_at", "out_of_range", text="within_last_30_days"))
        if data.kind == "return_visit" and data.outcome is None:
            errors.append(detail("outcome", "required", text="return_visit_outcome_required"))
        for name in ("outcome", "task_id"):
            if data.kind != "return_visit" and getattr(data, name) is not None:
                errors.append(detail(name, "not_allowed", text="outcome_return_visit_only"))
        if errors:
            raise Invalid("request.invalid", details=errors)
        lead = await self._leads.get(actor, lead_id)
        if data.task_id and self._tasks is not None and await self._tasks.open_return_visit(lead["_id"], data.task_id) is None:
            raise Invalid("followup.bad_task", details=[detail("task_id", "not_found", text="return_visit_task_not_open")])
        followup_id = data.id or str(ObjectId())
        location = data.location.model_dump() if data.location else None
        record: dict[str, Any] = {"kind": data.kind, "content": data.content, "location": location, "occurred_at": occurred, "next_followup_at": data.next_followup_at}
        if data.kind == "return_visit":  # 回访: its outcome, and the task it completes
            record.update(outcome=data.outcome, task_id=data.task_id)
        if data.attachments and self._uploads is not None:  # checked before anything is written; shown on the event
            record["attachments"] = await self._uploads.check(actor, data.attachments, kind="followup", target_id=followup_id)
        # The follow-up is itself the timeline event: one insert records both.
        doc = event(lead["_id"], "followup", actor, record, at=now, event_id=followup_id, extra={"author_id": actor.id, "updated_at": now})
        # A new lead's first follow-up moves it to contacted: the move (checked by the lead's stage
        # machine) is merged into the one replacement below, and its event goes in with this one.
        move = self._leads.plan_stage(lead, "contacted", actor, reason=f"first {data.kind}", at=now) if lead["stage"] == "new" else None
        try:
            await self._leads.add_events([doc, move.event] if move else [doc], ordered=True)
        except BulkWriteError:
            existing = await self._events.find_one({"_id": followup_id, "kind": "followup", "author_id": actor.id, "lead_id": lead["_id"]})
            if existing is None:
                raise Invalid("request.invalid", details=[detail("id", "taken", text="id_taken")]) from None
            await self._attach(actor, data, followup_id)  # in case the first try stopped before it
            return existing, False  # an offline phone sending the same follow-up again
        await self._attach(actor, data, followup_id)
        for attempt in range(3):  # a concurrent edit of the lead: read it again and re-apply
            update: dict[str, Any] = {"last_activity_at": max(occurred, lead.get("last_activity_at") or occurred), "updated_at": now, "touched_at": now}
            if data.next_followup_at is not None:
                update["next_followup_at"] = data.next_followup_at
            if lead.get("first_contact"):
                update["first_contact"] = None  # the first contact is made: the deadline is over (server/services/first_contact.py)
            if move and lead["stage"] == "new":
                update.update(move.changes)
            try:
                replaced = await self._leads.replace(lead, update)
                break
            except VersionMismatch:
                if attempt == 2:
                    raise
                lead = await self._leads.get(actor, lead_id)
        if self._tasks is not None:  # one command: the follow-up task moves to the new date, or closes
            await self._tasks.sync_followup_task(replaced, followup_logged=data.next_followup_at is None)
            if data.kind == "return_visit":  # and the return visit's task is done
                await self._tasks.complete_return_visits(lead["_id"], str(followup_id), data.task_id)
        if move and lead["stage"] != "new":
            await self._leads.withdraw_event(move.event["_id"])  # someone else moved it first
        elif move:
            await self._leads.apply_open_deltas([move], now)  # none for new → contacted: both open
        return doc, True

    async def _attach(self, actor: Actor, data: FollowupCreate, followup_id: str) -> None:
        if data.attachments and self._uploads is not None:
            await self._uploads.attach(actor, data.attachments, kind="followup", target_id=followup_id)

    async def readable(self, actor: Actor, followup_id: str) -> bool:
        """Who may read a follow-up's attachments: whoever may read its lead's timeline."""
        found = await self._events.find_one({"_id": str(followup_id), "kind": "followup"}, {"lead_id": 1})
        if found is None:
            return False
        try:
            await self._leads.get(actor, found["lead_id"], {"_id": 1})
        except NotFound:
            return False
        return True
