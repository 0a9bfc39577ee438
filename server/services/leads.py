"""Leads: one document per person or company for its whole life, its timeline, and the personal
data it holds (phone encrypted, blind-indexed for de-duplication, masked on the way out).

Scope is applied here and only here: a rep sees their own leads, a manager their team's, an admin
all. Anything outside the caller's scope is "not found", exactly like an id that does not exist.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from server.actor import Actor, scope_filter
from server.clock import Clock
from server.errors import ApiError, Conflict, Invalid, NotFound, VersionMismatch
from server.ids import maybe_oid
from server.paging import Page, paginate
from server.schemas.leads import LeadCreate, LeadListQuery, LeadUpdate, StageChange
from server.security import FieldCipher, mask_phone, normalise_mainland_mobile
from server.services.audit import AuditService
from server.services.forms import CleanAnswers
from server.services.lifecycle import (
    CUSTOMER_STAGES,
    OPEN_STAGES,
    REASON_REQUIRED,
    allowed_targets,
    public_status,
)
from server.services.ratelimit import too_many

SUBMISSION_KINDS = ("created", "resubmitted")
# Compact list items for phones: no notes, answers or ciphertexts.
LIST_PROJECTION = {"notes": 0, "answers": 0, "phone": 0, "recent_submits": 0, "customer_ids": 0, "cooldowns": 0}


SCOPE_EXITS_KEPT = 500


def scope_exit_update(lead_ids: list[str], at: datetime) -> dict:
    """The update that appends ``"<epoch ms>:<lead id>"`` entries to a user's recent scope exits
    (plain strings: nx-27017 mangles pushed sub-documents), keeping the last ``SCOPE_EXITS_KEPT``."""
    stamp = int(at.timestamp() * 1000)
    return {"$push": {"scope_exits": {"$each": [f"{stamp}:{lead_id}" for lead_id in lead_ids], "$slice": -SCOPE_EXITS_KEPT}}}


def submission_receipt(submission_id: ObjectId, at: datetime) -> dict:
    """What a public submitter is told: the submission itself, the same whether their phone was new
    or already had a lead (no lead id, nothing that tells the two apart)."""
    # Milliseconds, as the database keeps them: a replay reads the time back and answers the same.
    return {"submission_id": str(submission_id), "status": "received", "submitted_at": at.replace(microsecond=at.microsecond // 1000 * 1000)}


def new_lead_id() -> str:
    """Server-made lead ids are ObjectId hex strings; clients may send their own UUIDs instead."""
    return str(ObjectId())


class LeadService:
    def __init__(self, db, clock: Clock, cipher: FieldCipher, audit: AuditService, tasks=None, *, limiter=None, reveal_limit: tuple[int, int] = (60, 3600)) -> None:
        self._tasks = tasks  # TaskService: keeps the follow-up task in step with next_followup_at
        self._limiter = limiter  # RateLimiter: reveals per user, across instances
        self._reveal_limit, self._reveal_window_s = reveal_limit
        self._leads = db["leads"]
        self._events = db["lead_events"]
        self._users = db["users"]
        self._clock = clock
        self._cipher = cipher
        self._audit = audit

    # ------------------------------------------------------------ scope
    @staticmethod
    def scope(actor: Actor) -> dict:
        return scope_filter(actor, "owner_id")

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
        """The full value, for those whose scope covers the lead; every attempt is audited. Reveals
        are throttled per user (``MPCRM_REVEAL_LIMIT`` per ``MPCRM_REVEAL_WINDOW_S``): past it, 429
        and the refusal is on the record too."""
        if self._limiter is not None:
            try:
                await self._limiter.hit("reveal", actor.id, self._reveal_limit, self._reveal_window_s)
            except ApiError:
                await self._audit.record(actor, "lead.reveal", target_type="lead", target_id=str(lead_id)[:64], outcome="refused", details={"field": field, "reason": "throttled"})
                raise
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
    ) -> tuple[str, bool, dict]:
        """One lead per person: a known phone adds a ``resubmitted`` event instead of a second lead.

        Returns ``(lead_id, created, receipt)``; only the receipt (``submission_receipt``) is for
        the submitter. The phone's own rate limit is kept on its lead (the last few submission
        times), which costs no extra command.
        """
        now = self._clock.now()
        answers = {k: v for k, v in clean.answers.items() if not _is_phone_field(form, k)}
        event_data = {"form_slug": form["slug"], "form_title": form["title"], "form_version": form["version"], "answers": answers, "channel": channel, "campaign": campaign}
        if clean.phone:
            bidx = self._cipher.blind_index(clean.phone)
            for _ in range(2):  # a racing first submission of the same phone may win the insert
                existing = await self._leads.find_one_and_update(
                    {"phone_bidx": bidx},
                    {"$push": {"recent_submits": {"$each": [now.timestamp()], "$slice": -(phone_limit_per_minute + 1)}}},
                    projection={"stage": 1, "recent_submits": 1},
                    return_document=ReturnDocument.AFTER,
                )
                if existing is not None:
                    await self._resubmitted(existing, now, phone_limit_per_minute, submission_id, event_data, customer_id)
                    return existing["_id"], False, submission_receipt(submission_id, now)
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
        return lead_id, True, submission_receipt(submission_id, now)

    async def _resubmitted(self, lead: dict, now: datetime, limit: int, submission_id: ObjectId, data: dict, customer_id: str | None) -> None:
        recent = lead.get("recent_submits") or []  # epoch seconds of the last few submissions
        if len(recent) > limit and recent[0] > now.timestamp() - 60:
            raise too_many(timedelta(seconds=recent[0] + 60 - now.timestamp()))
        if lead.get("stage") == "churned":
            # A churned customer who comes back: flag for win-back, the owner decides.
            await self._leads.update_one({"_id": lead["_id"]}, {"$set": {"winback_candidate": True}, "$currentDate": {"updated_at": True}, "$inc": {"version": 1}})
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
            "awaiting_allocation": True,
            "answers": answers,
            "customer_ids": [customer_id] if customer_id else [],
            "recent_submits": [now.timestamp()],
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
        """One timeline event. ``actor`` None is the public form only (a customer, or anonymous);
        jobs pass ``server.actor.SYSTEM``."""
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
        """The receipt of an earlier submission, for an idempotent replay."""
        event = await self._events.find_one({"_id": ObjectId(submission_id)}, {"at": 1})
        return submission_receipt(ObjectId(submission_id), event["at"]) if event else None

    async def my_submissions(self, actor: Actor, limit: int, cursor: str | None) -> Page:
        """A customer's own submissions and what they did; never staff data, never another lead.

        A submission that reached a lead this customer started (``created_by``) shows that lead's
        public status; one that reached a lead somebody else started (their phone was already
        known) shows only ``received``, so the list tells nothing about other people's leads.
        """
        page = await paginate(self._events, {"customer_id": actor.id}, limit=limit, cursor=cursor, projection={"kind": 1, "lead_id": 1, "at": 1, "data": 1})
        lead_ids = list({e["lead_id"] for e in page.items})
        leads = {d["_id"]: d for d in await self._leads.find({"_id": {"$in": lead_ids}}, {"stage": 1, "created_by": 1}).to_list(None)} if lead_ids else {}

        def status(lead_id: str) -> str:
            lead = leads.get(lead_id)
            if lead is None or lead.get("created_by") != actor.id:
                return "received"
            return public_status(lead.get("stage", "new"))

        page.items = [
            {
                "submission_id": str(e["_id"]),
                "form_slug": e["data"].get("form_slug", ""),
                "form_title": e["data"].get("form_title"),
                "submitted_at": e["at"],
                "status": status(e["lead_id"]),
            }
            for e in page.items
            if e.get("kind") in SUBMISSION_KINDS
        ]
        return page

    # ------------------------------------------------------------ the rep's workspace
    async def create(self, actor: Actor, data: LeadCreate, lead_id: str | None = None) -> tuple[dict, bool]:
        """A rep captures a lead on the go; they own it. Returns ``(lead, created)``.

        A client-made id that already exists, was made by the same person and is still in their
        scope is a retry from an offline phone: the existing lead comes back and nothing is written
        twice. Any other collision (someone else's lead, or the caller's own lead since reassigned
        or moved to another team) is 409 ``lead.id_taken`` and tells nothing of that lead.
        """
        lead_id = data.id or lead_id or new_lead_id()
        now = self._clock.now()
        doc: dict[str, Any] = {
            "_id": lead_id,
            "name": data.name,
            "company": data.company,
            "email": data.email,
            "city": data.city,
            "notes": data.notes,
            "tags": sorted(set(data.tags)),
            "level": data.level,
            "stage": "new",
            "owner_id": actor.id if actor.role in ("rep", "manager") else None,
            "team_id": actor.team_id,
            "source": {"kind": "manual"},
            "pool": False,
            "next_followup_at": data.next_followup_at,
            "touched_at": now,
            "assignment": {"owner_id": actor.id, "rule_id": None, "strategy": "self", "reason": {"zh-CN": "本人录入", "en": "captured by the owner"}, "at": now}
            if actor.role in ("rep", "manager") else None,
            "customer_ids": [],
            "version": 1,
            "created_at": now,
            "updated_at": now,
            "created_by": actor.id,
        }
        if data.phone:
            phone = normalise_mainland_mobile(data.phone)
            if phone is None:
                raise Invalid("request.invalid", details=[{"field": "phone", "code": "invalid", "message": "not a mainland mobile number"}])
            doc.update(self.seal_phone(phone, lead_id))
        try:
            await self._leads.insert_one(doc)
        except DuplicateKeyError as exc:
            existing = await self._leads.find_one({"_id": lead_id, "created_by": actor.id, **self.scope(actor)})
            if existing is not None:
                return existing, False
            if data.phone and "phone_bidx" in str(exc):
                visible = await self._leads.find_one({"phone_bidx": doc["phone_bidx"], **self.scope(actor)}, {"_id": 1})
                raise Conflict("lead.duplicate", details=[{"field": "phone", "code": "duplicate", "message": visible["_id"] if visible else "exists"}]) from None
            raise Conflict("lead.id_taken", details=[{"field": "id", "code": "taken", "message": "choose another id"}]) from None
        if doc["owner_id"]:
            await self.adjust_open_leads(doc["owner_id"], +1)
        if self._tasks is not None and doc["next_followup_at"] and doc["owner_id"]:
            await self._tasks.sync_followup_task(doc)
        await self.add_event(lead_id, "created", actor, {"source": "manual"}, at=now)
        return doc, True

    async def exists(self, lead_id: str) -> bool:
        return await self._leads.find_one({"_id": lead_id}, {"_id": 1}) is not None

    async def list(self, actor: Actor, query: LeadListQuery) -> Page:
        filter_: dict[str, Any] = {}
        if query.stage:
            filter_["stage"] = query.stage
        if query.tag:
            filter_["tags"] = query.tag
        if query.owner_id:
            filter_["owner_id"] = query.owner_id
        if query.layer:
            filter_["layer"] = query.layer
        if query.phone:
            phone = normalise_mainland_mobile(query.phone)
            filter_["phone_bidx"] = self._cipher.blind_index(phone) if phone else "-"
        if query.q:
            prefix = {"$regex": "^" + re.escape(query.q)}
            filter_["$or"] = [{"name": prefix}, {"company": prefix}]
        scope = self.scope(actor)
        if "owner_id" in scope and query.owner_id and query.owner_id != scope["owner_id"]:
            filter_["owner_id"] = {"$in": []}  # a filter never widens the scope
        else:
            filter_.update(scope)
        if query.sort == "next_followup":
            filter_.setdefault("next_followup_at", {"$ne": None})
            return await paginate(self._leads, filter_, limit=query.limit, cursor=query.cursor, sort_key="next_followup_at", descending=False, projection=LIST_PROJECTION)
        return await paginate(self._leads, filter_, limit=query.limit, cursor=query.cursor, sort_key="updated_at", projection=LIST_PROJECTION)

    async def update(self, actor: Actor, lead_id: str, data: LeadUpdate, version: int) -> dict:
        changes = data.model_dump(exclude_unset=True, exclude={"version"})
        if "tags" in changes:
            changes["tags"] = sorted(set(changes["tags"] or []))
        lead = await self.get(actor, lead_id)  # 404 when missing or not yours
        if lead["version"] != version:
            raise VersionMismatch("lead.version_mismatch")
        now = self._clock.now()
        doc = await self.replace(lead, {**changes, "updated_at": now})
        if self._tasks is not None and "next_followup_at" in changes and changes["next_followup_at"] != lead.get("next_followup_at"):
            await self._tasks.sync_followup_task(doc)
        await self.add_event(doc["_id"], "updated", actor, {"fields": sorted(changes)}, at=now)
        return doc

    async def replace(self, lead: dict, changes: dict, extra_filter: dict | None = None) -> dict:
        """Write a changed lead whole, only if nobody changed it since it was read (412 otherwise).

        Leads carry business datetimes (next follow-up, last activity), and datetimes are written
        by replacement rather than ``$set`` (docs/mongodb-compat.md); the version in the filter
        makes the replacement as safe as an atomic update.
        """
        new = {**lead, **changes, "version": lead["version"] + 1}
        doc = await self._leads.find_one_and_replace(
            {"_id": lead["_id"], "version": lead["version"], **(extra_filter or {})}, new, return_document=ReturnDocument.AFTER
        )
        if doc is None:
            raise VersionMismatch("lead.version_mismatch")
        return doc

    async def change_stage(self, actor: Actor, lead_id: str, change: StageChange) -> dict:
        lead = await self.get(actor, lead_id)
        return await self.move_stage(lead, change.to, actor, reason=change.reason, expected_version=change.version)

    async def move_stage(self, lead: dict, to: str, actor: Actor, *, reason: str | dict[str, str] | None = None, expected_version: int | None = None, extra: dict | None = None) -> dict:
        """The one place stages change: checks the machine, writes atomically, records the event.
        Someone always moves a stage: a person, or ``SYSTEM`` for jobs (never the "public" of a
        form submission). A reason the system writes is given in both languages (server/i18n.py)."""
        if actor is None:
            raise ValueError("a stage change needs an actor: the person, or server.actor.SYSTEM in jobs")
        current = lead["stage"]
        if to not in allowed_targets(current):
            raise Conflict("lead.invalid_transition", params={"from": current, "to": to}, details=[{"field": "to", "code": "allowed", "message": ",".join(allowed_targets(current))}])
        if (current, to) in REASON_REQUIRED and not reason:
            raise Invalid("lead.reason_required", details=[{"field": "reason", "code": "required", "message": "this move needs a reason"}])
        if expected_version is not None and expected_version != lead["version"]:
            raise VersionMismatch("lead.version_mismatch")
        now = self._clock.now()
        changes = {"stage": to, "stage_changed_at": now, "updated_at": now, **(extra or {})}
        if to in CUSTOMER_STAGES and not lead.get("last_activity_at"):
            # A new customer's silence (churn warnings) counts from the day they signed.
            changes["last_activity_at"] = now
        updated = await self.replace(lead, changes, {"stage": current})
        owner = lead.get("owner_id")
        if owner and (current in OPEN_STAGES) != (to in OPEN_STAGES):
            await self.adjust_open_leads(owner, +1 if to in OPEN_STAGES else -1)
        await self.add_event(lead["_id"], "stage_changed", actor, {"from": current, "to": to, "reason": reason}, at=now)
        return updated

    async def timeline(self, actor: Actor, lead_id: str, limit: int, cursor: str | None) -> Page:
        lead = await self.get(actor, lead_id, {"_id": 1})
        return await paginate(self._events, {"lead_id": lead["_id"]}, limit=limit, cursor=cursor, sort_key="at")

    async def record_scope_exit(self, user_id: str, lead_id: str, at: datetime) -> None:
        """A lead left a rep's scope (released, reassigned, reclaimed): offline sync must drop it.

        Kept on the rep's own user document (read on every request anyway), so a sync page pays
        nothing extra for it; see ``scope_exit_update``."""
        oid = maybe_oid(user_id)
        if oid is not None:
            await self._users.update_one({"_id": oid}, scope_exit_update([lead_id], at))

    async def owner_changed(self, lead: dict) -> None:
        """After a lead changed hands: its follow-up task follows the new owner, or closes."""
        if self._tasks is not None:
            await self._tasks.sync_followup_task(lead)

    async def adjust_open_leads(self, owner_id: str, delta: int) -> None:
        """Each owner's count of open leads, for capacity checks and least-loaded allocation."""
        oid = maybe_oid(owner_id)
        if oid is not None:
            await self._users.update_one({"_id": oid}, {"$inc": {"open_leads": delta}})

    # ------------------------------------------------------------ output
    @staticmethod
    def out(doc: dict) -> dict:
        return {**doc, "id": doc["_id"], "phone": doc.get("phone_masked")}


def _is_phone_field(form: dict, key: str) -> bool:
    return any(f["key"] == key and f["type"] == "phone" for f in form["fields"])
