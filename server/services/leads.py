"""Leads: one document per person or company for its whole life, its timeline, and the personal
data it holds (phone encrypted, blind-indexed for de-duplication, masked on the way out).

Scope is applied here and only here: a rep sees their own leads, a manager their team's, an admin
all. Anything outside the caller's scope is "not found", exactly like an id that does not exist.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from server.actor import Actor
from server.clock import Clock
from server.errors import NotFound
from server.paging import Page, paginate
from server.security import FieldCipher, mask_phone
from server.services.audit import AuditService
from server.services.forms import CleanAnswers
from server.services.lifecycle import public_status
from server.services.ratelimit import too_many

SUBMISSION_KINDS = ("created", "resubmitted")


def new_lead_id() -> str:
    """Server-made lead ids are ObjectId hex strings; clients may send their own UUIDs instead."""
    return str(ObjectId())


class LeadService:
    def __init__(self, db, clock: Clock, cipher: FieldCipher, audit: AuditService) -> None:
        self._leads = db["leads"]
        self._events = db["lead_events"]
        self._clock = clock
        self._cipher = cipher
        self._audit = audit

    # ------------------------------------------------------------ scope
    @staticmethod
    def scope(actor: Actor) -> dict:
        if actor.is_admin:
            return {}
        if actor.is_manager:
            return {"team_id": actor.team_id or "-"}
        if actor.role == "rep":
            return {"owner_id": actor.id}
        return {"_id": None}  # customers and anyone else: nothing

    async def get(self, actor: Actor, lead_id: str, projection: dict | None = None) -> dict:
        doc = await self._leads.find_one({"_id": str(lead_id)[:64], **self.scope(actor)}, projection)
        if doc is None:
            raise NotFound("lead.not_found")
        return doc

    # ------------------------------------------------------------ personal data
    def seal_phone(self, phone: str, lead_id: str) -> dict[str, Any]:
        """The stored form of a phone number: ciphertext, blind index and mask; never plaintext."""
        return {
            "phone": self._cipher.encrypt(phone, lead_id),
            "phone_bidx": self._cipher.blind_index(phone),
            "phone_masked": mask_phone(phone),
        }

    async def reveal(self, actor: Actor, lead_id: str, field: str) -> str:
        """The full value, for those whose scope covers the lead; every attempt is audited."""
        doc = await self._leads.find_one({"_id": str(lead_id)[:64], **self.scope(actor)}, {"phone": 1})
        if doc is None or not doc.get("phone"):
            await self._audit.record(actor, "lead.reveal", target_type="lead", target_id=str(lead_id)[:64], outcome="refused", details={"field": field})
            raise NotFound("lead.not_found")
        value = self._cipher.decrypt(doc["phone"], doc["_id"])
        await self._audit.record(actor, "lead.reveal", target_type="lead", target_id=doc["_id"], details={"field": field})
        return value

    # ------------------------------------------------------------ capture from a form
    async def capture_submission(
        self,
        *,
        form: dict,
        clean: CleanAnswers,
        submission_id: ObjectId,
        channel: str | None,
        campaign: str | None,
        customer_id: str | None,
        phone_limit_per_minute: int,
    ) -> tuple[str, bool]:
        """One lead per person: a known phone adds a ``resubmitted`` event instead of a second lead.

        Returns ``(lead_id, created)``. The phone's own rate limit is kept on its lead (the last
        few submission times), which costs no extra command.
        """
        now = self._clock.now()
        answers = {k: v for k, v in clean.answers.items() if not _is_phone_field(form, k)}
        event_data = {"form_slug": form["slug"], "form_title": form["title"], "form_version": form["version"], "answers": answers, "channel": channel, "campaign": campaign}
        if clean.phone:
            bidx = self._cipher.blind_index(clean.phone)
            for _ in range(2):  # a racing first submission of the same phone may win the insert
                existing = await self._leads.find_one_and_update(
                    {"phone_bidx": bidx},
                    {
                        "$push": {"recent_submits": {"$each": [now], "$slice": -(phone_limit_per_minute + 1)}},
                        "$set": {"last_submitted_at": now},
                    },
                    projection={"stage": 1, "recent_submits": 1},
                    return_document=ReturnDocument.AFTER,
                )
                if existing is not None:
                    await self._resubmitted(existing, now, phone_limit_per_minute, submission_id, event_data, customer_id)
                    return existing["_id"], False
                try:
                    lead_id = await self._insert_form_lead(form, clean, answers, now, channel, campaign, customer_id, bidx)
                    break
                except DuplicateKeyError:
                    continue
            else:  # pragma: no cover - the second pass always finds the winner's lead
                raise NotFound("lead.not_found")
        else:
            lead_id = await self._insert_form_lead(form, clean, answers, now, channel, campaign, customer_id, None)
        await self.add_event(lead_id, "created", None, event_data, event_id=submission_id, customer_id=customer_id, at=now)
        return lead_id, True

    async def _resubmitted(self, lead: dict, now: datetime, limit: int, submission_id: ObjectId, data: dict, customer_id: str | None) -> None:
        recent = lead.get("recent_submits") or []
        if len(recent) > limit and recent[0] > now - timedelta(minutes=1):
            raise too_many(recent[0] + timedelta(minutes=1) - now)
        if lead.get("stage") == "churned":
            # A churned customer who comes back: flag for win-back, the owner decides.
            await self._leads.update_one({"_id": lead["_id"]}, {"$set": {"winback_candidate": True, "updated_at": now}, "$inc": {"version": 1}})
            data = {**data, "winback_candidate": True}
        await self.add_event(lead["_id"], "resubmitted", None, data, event_id=submission_id, customer_id=customer_id, at=now)

    async def _insert_form_lead(self, form, clean: CleanAnswers, answers, now, channel, campaign, customer_id, bidx) -> str:
        lead_id = new_lead_id()
        fields = clean.lead_fields
        doc: dict[str, Any] = {
            "_id": lead_id,
            "name": fields.get("name") or (f"表单访客 {mask_phone(clean.phone)}" if clean.phone else "表单访客"),
            "company": fields.get("company"),
            "email": fields.get("email"),
            "city": fields.get("city"),
            "notes": fields.get("notes"),
            "tags": clean.tags,
            "stage": "new",
            "owner_id": None,
            "team_id": form["team_id"],
            "source": {"kind": "form", "form_slug": form["slug"], "form_version": form["version"], "channel": channel, "campaign": campaign},
            "pool": False,
            "answers": answers,
            "customer_ids": [customer_id] if customer_id else [],
            "recent_submits": [now],
            "last_submitted_at": now,
            "version": 1,
            "created_at": now,
            "updated_at": now,
            "created_by": customer_id or "public",
        }
        if clean.phone:
            doc.update(self.seal_phone(clean.phone, lead_id))
        await self._leads.insert_one(doc)
        return lead_id

    # ------------------------------------------------------------ timeline
    async def add_event(
        self, lead_id: str, kind: str, actor: Actor | None, data: dict | None = None, *,
        event_id: ObjectId | None = None, customer_id: str | None = None, at: datetime | None = None,
    ) -> dict:
        event = {
            "_id": event_id or ObjectId(),
            "lead_id": lead_id,
            "kind": kind,
            "at": at or self._clock.now(),
            "actor_id": actor.id if actor else None,
            "actor_role": actor.role if actor else ("customer" if customer_id else "public"),
            "data": data or {},
        }
        if customer_id:
            event["customer_id"] = customer_id
        await self._events.insert_one(event)
        return event

    async def submission_result(self, submission_id: str) -> dict | None:
        """The response of an earlier submission, for an idempotent replay."""
        event = await self._events.find_one({"_id": ObjectId(submission_id)}, {"lead_id": 1})
        return {"submission_id": submission_id, "lead_id": event["lead_id"]} if event else None

    async def my_submissions(self, actor: Actor, limit: int, cursor: str | None) -> Page:
        """A customer's own submissions with each lead's public status; never staff data."""
        page = await paginate(self._events, {"customer_id": actor.id}, limit=limit, cursor=cursor, projection={"kind": 1, "lead_id": 1, "at": 1, "data.form_slug": 1, "data.form_title": 1})
        lead_ids = list({e["lead_id"] for e in page.items})
        stages = {d["_id"]: d["stage"] for d in await self._leads.find({"_id": {"$in": lead_ids}}, {"stage": 1}).to_list(None)} if lead_ids else {}
        page.items = [
            {
                "submission_id": str(e["_id"]),
                "form_slug": e["data"].get("form_slug", ""),
                "form_title": e["data"].get("form_title"),
                "submitted_at": e["at"],
                "status": public_status(stages.get(e["lead_id"], "new")),
            }
            for e in page.items
            if e.get("kind") in SUBMISSION_KINDS
        ]
        return page

    # ------------------------------------------------------------ output
    @staticmethod
    def out(doc: dict) -> dict:
        return {**doc, "id": doc["_id"], "phone": doc.get("phone_masked")}


def _is_phone_field(form: dict, key: str) -> bool:
    return any(f["key"] == key and f["type"] == "phone" for f in form["fields"])
