"""Follow-ups: calls, visits with a location check-in, WeChat chats, meetings and notes.

A follow-up bumps the lead's ``last_activity_at``, sets its ``next_followup_at`` when given, and
moves a ``new`` lead to ``contacted``; its timeline events are written in one command.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from server.actor import Actor
from server.clock import Clock
from server.errors import Invalid, VersionMismatch
from server.schemas.leads import FollowupCreate
from server.services.leads import LeadService

MAX_AHEAD = timedelta(days=366)
MAX_BACKDATE = timedelta(days=30)


class FollowupService:
    def __init__(self, db, clock: Clock, leads: LeadService) -> None:
        self._followups = db["followups"]
        self._leads_col = db["leads"]
        self._events = db["lead_events"]
        self._clock = clock
        self._leads = leads

    async def add(self, actor: Actor, lead_id: str, data: FollowupCreate) -> tuple[dict, bool]:
        now = self._clock.now()
        errors = []
        if data.kind == "visit" and data.location is None:
            errors.append({"field": "location", "code": "required", "message": "a visit needs a check-in location"})
        if data.next_followup_at is not None and not (now - timedelta(minutes=5) <= data.next_followup_at <= now + MAX_AHEAD):
            errors.append({"field": "next_followup_at", "code": "out_of_range", "message": "must be in the coming year"})
        occurred = data.occurred_at or now
        if not (now - MAX_BACKDATE <= occurred <= now + timedelta(minutes=5)):
            errors.append({"field": "occurred_at", "code": "out_of_range", "message": "must be within the last 30 days"})
        if errors:
            raise Invalid("request.invalid", details=errors)
        lead = await self._leads.get(actor, lead_id)
        followup_id = data.id or str(ObjectId())
        doc: dict[str, Any] = {
            "_id": followup_id,
            "lead_id": lead["_id"],
            "kind": data.kind,
            "content": data.content,
            "location": data.location.model_dump() if data.location else None,
            "author_id": actor.id,
            "occurred_at": occurred,
            "next_followup_at": data.next_followup_at,
            "created_at": now,
            "updated_at": now,
        }
        try:
            await self._followups.insert_one(doc)
        except DuplicateKeyError:
            existing = await self._followups.find_one({"_id": followup_id, "author_id": actor.id, "lead_id": lead["_id"]})
            if existing is None:
                raise Invalid("request.invalid", details=[{"field": "id", "code": "taken", "message": "this id is taken"}]) from None
            return existing, False  # an offline phone sending the same follow-up again
        events = [{"_id": ObjectId(), "lead_id": lead["_id"], "kind": "followup", "at": now, "actor_id": actor.id, "actor_role": actor.role,
                   "data": {"followup_id": followup_id, "kind": data.kind, "content": data.content[:200], "location": doc["location"]}}]
        for attempt in range(3):  # a concurrent edit of the lead: read it again and re-apply
            update: dict[str, Any] = {"last_activity_at": max(occurred, lead.get("last_activity_at") or occurred), "updated_at": now}
            if data.next_followup_at is not None:
                update["next_followup_at"] = data.next_followup_at
            moves = lead["stage"] == "new"
            if moves:
                update.update({"stage": "contacted", "stage_changed_at": now})
            try:
                await self._leads.replace(lead, update)
                break
            except VersionMismatch:
                if attempt == 2:
                    raise
                lead = await self._leads.get(actor, lead_id)
        if moves:
            events.append({"_id": ObjectId(), "lead_id": lead["_id"], "kind": "stage_changed", "at": now, "actor_id": actor.id,
                           "actor_role": actor.role, "data": {"from": "new", "to": "contacted", "reason": f"first {data.kind}"}})
        await self._events.insert_many(events)
        return doc, True
