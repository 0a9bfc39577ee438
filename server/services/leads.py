"""Leads: one document per person or company for its whole life, its timeline, and the personal
data it holds (phone encrypted, blind-indexed for de-duplication, masked on the way out).

Scope is applied here and only here: a rep sees their own leads, a manager their team's, an admin
all. Anything outside the caller's scope is "not found", exactly like an id that does not exist.
"""

from __future__ import annotations

import builtins
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from server.actor import SYSTEM, Actor, scope_filter
from server.clock import Clock, as_utc
from server.errors import ApiError, Conflict, Invalid, NotFound, VersionMismatch, detail
from server.paging import Page, paginate
from server.schemas.leads import LeadCreate, LeadListQuery, LeadUpdate, StageChange
from server.security import FieldCipher, mask_phone, normalise_mainland_mobile
from server.services import first_contact, reasons
from server.services.audit import AuditService
from server.services.forms import CleanAnswers
from server.services.lead_store import LeadStore, derived_event_id, event
from server.services.notifications import notification
from server.services.lifecycle import (
    CUSTOMER_STAGES,
    OPEN_STAGES,
    REASON_REQUIRED,
    allowed_targets,
    public_status,
)
from server.services.ratelimit import too_many
from server.services.users import OwnerTally, UserService

SUBMISSION_KINDS = ("created", "resubmitted")
WINBACK_TASK_DUE = timedelta(days=1)  # the suggested win-back task is due a day after the customer came back
# Compact list items for phones: no notes, answers or ciphertexts.
LIST_PROJECTION = {"notes": 0, "answers": 0, "phone": 0, "recent_submits": 0, "customer_ids": 0, "cooldowns": 0}


__all__ = ["LIST_PROJECTION", "LeadService", "StageMove", "event", "new_lead_id", "submission_receipt"]


@dataclass
class StageMove:
    """A checked stage change, not yet written: the fields to merge into the lead's one
    version-guarded replacement, its ``stage_changed`` event, and the owner's open-lead change."""

    lead: dict
    to: str
    changes: dict
    event: dict
    open_delta: int


def submission_receipt(submission_id: ObjectId, at: datetime) -> dict:
    """What a public submitter is told: the submission itself, the same whether their phone was new
    or already had a lead (no lead id, nothing that tells the two apart)."""
    # Milliseconds, as the database keeps them: a replay reads the time back and answers the same.
    return {"submission_id": str(submission_id), "status": "received", "submitted_at": at.replace(microsecond=at.microsecond // 1000 * 1000)}


def new_lead_id() -> str:
    """Server-made lead ids are ObjectId hex strings; clients may send their own UUIDs instead."""
    return str(ObjectId())


class LeadService:
    """The owner of the lead aggregate: every write to ``leads`` and ``lead_events`` goes through
    here (to its ``LeadStore``), every stage change through ``move_stage``/``plan_stage``, every
    change of an owner's open-lead count through ``UserService.record_lead_changes``."""

    def __init__(
        self, *, store: LeadStore, leads, lead_events, users: UserService, clock: Clock, cipher: FieldCipher, audit: AuditService,
        tasks=None, limiter=None, reveal_limit: tuple[int, int] = (60, 3600), notifications=None, tz: ZoneInfo | None = None,
    ) -> None:
        self._tz = tz or ZoneInfo("Asia/Shanghai")  # business time zone: first-contact deadlines in business hours
        self._notifications = notifications  # NotificationService: the win-back news
        self._tasks = tasks  # TaskService: keeps the follow-up task in step with next_followup_at
        self._limiter = limiter  # RateLimiter: reveals per user, across instances
        self._reveal_limit, self._reveal_window_s = reveal_limit
        self._store = store
        self._leads = leads  # read-only views; writes go through the store
        self._events = lead_events
        self._users = users
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
            reason = {"reason": "no_phone"} if doc is not None else {}
            await self._audit.record(actor, "lead.reveal", target_type="lead", target_id=str(lead_id)[:64], outcome="refused", details={"field": field, **reason})
            if doc is None:
                raise NotFound("lead.not_found")
            raise Conflict("lead.no_phone")  # the lead is there (and the caller may see it); its phone is not
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
        referrer_id: str | None = None,
    ) -> tuple[str, bool, dict]:
        """One lead per person: a known phone adds a ``resubmitted`` event instead of a second lead.

        Returns ``(lead_id, created, receipt)``; only the receipt (``submission_receipt``) is for
        the submitter. The phone's own rate limit is kept on its lead (the last few submission
        times), which costs no extra command.
        """
        now = self._clock.now()
        answers = {k: v for k, v in clean.answers.items() if not _is_phone_field(form, k)}
        event_data = {"form_slug": form["slug"], "form_title": form["title"], "form_version": form["version"], "answers": answers, "channel": channel, "campaign": campaign}
        if referrer_id:
            event_data["referrer_id"] = referrer_id
        if clean.phone:
            bidx = self._cipher.blind_index(clean.phone)
            for _ in range(2):  # a racing first submission of the same phone may win the insert
                existing = await self._store.note_submission(bidx, now, phone_limit_per_minute + 1)
                if existing is not None:
                    await self._resubmitted(existing, now, phone_limit_per_minute, submission_id, event_data, customer_id)
                    return existing["_id"], False, submission_receipt(submission_id, now)
                try:
                    lead_id = await self._insert_form_lead(form, clean, answers, now, channel, campaign, customer_id, bidx, referrer_id)
                    break
                except DuplicateKeyError:
                    continue
            else:  # pragma: no cover - the second pass always finds the winner's lead
                raise NotFound("lead.not_found")
        else:
            lead_id = await self._insert_form_lead(form, clean, answers, now, channel, campaign, customer_id, None, referrer_id)
        await self.add_event(lead_id, "created", None, event_data, event_id=submission_id, customer_id=customer_id, at=now)
        return lead_id, True, submission_receipt(submission_id, now)

    async def active_staff_id(self, user_id: str) -> str | None:
        """``user_id`` when it names an active rep, manager or admin, else None (a form's referrer)."""
        return await self._users.active_staff_id(user_id)

    async def _resubmitted(self, lead: dict, now: datetime, limit: int, submission_id: ObjectId, data: dict, customer_id: str | None) -> None:
        recent = lead.get("recent_submits") or []  # epoch seconds of the last few submissions
        if len(recent) > limit and recent[0] > now.timestamp() - 60:
            raise too_many(timedelta(seconds=recent[0] + 60 - now.timestamp()))
        before = None
        if lead.get("stage") == "churned":
            # A churned customer who comes back: flag for win-back, the owner decides.
            before = await self._store.flag_winback(lead["_id"])
            data = {**data, "winback_candidate": True}
        await self.add_event(lead["_id"], "resubmitted", None, data, event_id=submission_id, customer_id=customer_id, at=now)
        if before is not None and not before.get("winback_candidate"):
            await self._winback_started(before, "form", now)

    # ------------------------------------------------------------ win-back (挽回)
    async def note_return(self, lead_id: str, source: str, now: datetime) -> bool:
        """A churned customer is back (``source``: ``form`` — they submitted a form again, or
        ``contract`` — a new contract was drafted for them): the lead joins the win-back list
        (``winback_candidate``) and, the first time in this churn, the owner is told and given a
        suggested task (the team's managers are told when the owner is gone). True: newly flagged."""
        before = await self._store.flag_winback(lead_id)
        if before is None or before.get("winback_candidate"):
            return False
        await self._winback_started(before, source, now)
        return True

    async def _winback_started(self, lead: dict, source: str, now: datetime) -> None:
        churned_at = lead.get("stage_changed_at")
        episode = int(as_utc(churned_at).timestamp()) if isinstance(churned_at, datetime) else 0
        key = f"winback:{lead['_id']}:{episode}"  # once per churn: a second return says nothing new
        name = lead.get("name") or ""
        how = {"form": "再次提交了表单", "contract": "有了新的合同"}.get(source, "回来了")
        owner = await self._users.active_staff_id(lead["owner_id"]) if lead.get("owner_id") else None
        recipients = [owner] if owner else (await self._users.active_managers([lead.get("team_id")])).get(str(lead.get("team_id")), [])
        data = {"lead_id": lead["_id"], "source": source, "suggest": "winback"}
        if self._notifications is not None and recipients:
            await self._notifications.notify([
                notification(user_id, "winback", f"流失客户回来了：{name}", f"{name} {how}，建议尽快挽回", f"{key}:{user_id}", data=data)
                for user_id in recipients
            ], now)
        if owner and self._tasks is not None:
            await self._tasks.create_system_task(key, kind="winback", title=f"挽回客户 {name}".strip(), lead=lead, assignee_id=owner,
                                                 due_at=now + WINBACK_TASK_DUE, now=now, notify_kind=None, data={"source": source})

    async def _insert_form_lead(self, form, clean: CleanAnswers, answers, now, channel, campaign, customer_id, bidx, referrer_id=None) -> str:
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
            "source": {"kind": "form", "form_slug": form["slug"], "form_version": form["version"], "channel": channel, "campaign": campaign,
                       **({"referrer_id": referrer_id} if referrer_id else {})},
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
        await self._store.insert(doc)
        return lead_id

    # ------------------------------------------------------------ timeline
    async def add_event(
        self, lead_id: str, kind: str, actor: Actor | None, data: dict | None = None, *,
        event_id: ObjectId | None = None, customer_id: str | None = None, at: datetime | None = None,
    ) -> dict:
        """One timeline event (built by ``event``). ``actor`` None is the public form only (a
        customer, or anonymous); jobs pass ``server.actor.SYSTEM``."""
        doc = event(lead_id, kind, actor, data, at=at or self._clock.now(), event_id=event_id, customer_id=customer_id)
        await self._store.add_event(doc)
        return doc

    async def add_events(self, docs: list[dict], *, ordered: bool = False) -> None:
        """Events built by ``event``, in one write (sweeps, imports, a follow-up and its stage move)."""
        if docs:
            await self._store.add_events(docs, ordered=ordered)

    async def withdraw_event(self, event_id: Any) -> None:
        await self._store.withdraw_event(event_id)

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
                raise Invalid("request.invalid", details=[detail("phone", "invalid", text="phone_invalid")])
            doc.update(self.seal_phone(phone, lead_id))
        try:
            await self._store.insert(doc)
        except DuplicateKeyError as exc:
            existing = await self._leads.find_one({"_id": lead_id, "created_by": actor.id, **self.scope(actor)})
            if existing is not None:
                return existing, False
            if data.phone and "phone_bidx" in str(exc):
                visible = await self._leads.find_one({"phone_bidx": doc["phone_bidx"], **self.scope(actor)}, {"_id": 1})
                raise Conflict("lead.duplicate", details=[detail("phone", "duplicate", text="lead_exists_visible", value=visible["_id"], lead_id=visible["_id"]) if visible else detail("phone", "duplicate", text="lead_exists")]) from None
            raise Conflict("lead.id_taken", details=[detail("id", "taken", text="choose_another_id")]) from None
        if doc["owner_id"]:
            await self._users.adjust_open_leads(doc["owner_id"], +1)
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
        if query.winback is not None:
            filter_["winback_candidate"] = True if query.winback else {"$ne": True}
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
        if query.sort == "lifetime_value":  # customers by money received to date, most first
            filter_.setdefault("lifetime_value_fen", {"$gt": 0})
            return await paginate(self._leads, filter_, limit=query.limit, cursor=query.cursor, sort_key="lifetime_value_fen", projection=LIST_PROJECTION)
        if query.sort == "next_followup":
            filter_.setdefault("next_followup_at", {"$ne": None})
            return await paginate(self._leads, filter_, limit=query.limit, cursor=query.cursor, sort_key="next_followup_at", descending=False, projection=LIST_PROJECTION)
        return await paginate(self._leads, filter_, limit=query.limit, cursor=query.cursor, sort_key="updated_ms", projection=LIST_PROJECTION)

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
        doc = await self._store.replace(lead, changes, extra_filter)
        if doc is None:
            raise VersionMismatch("lead.version_mismatch")
        return doc

    async def change_stage(self, actor: Actor, lead_id: str, change: StageChange) -> dict:
        """A person moves a lead. To ``lost`` or ``churned`` the reason comes from the team's
        catalogue (server/services/reasons.py): checked before anything is written."""
        lead = await self.get(actor, lead_id)
        coded = None
        if change.to in reasons.CATALOGUES or change.reason_code is not None or change.reason_note is not None:
            catalogue = (await self._users.team_settings(lead.get("team_id"))).reasons
            coded = reasons.resolve(catalogue, change.to, change.reason_code, change.reason_note, change.reason)
        reason = coded.pop("reason") if coded else change.reason
        return await self.move_stage(lead, change.to, actor, reason=reason, expected_version=change.version, event_data=coded)

    def plan_stage(
        self, lead: dict, to: str, actor: Actor, *, reason: str | dict[str, str] | None = None,
        expected_version: int | None = None, extra: dict | None = None, at: datetime | None = None,
        event_data: dict | None = None,
    ) -> StageMove:
        """The stage machine: checks the move and says what it changes, writing nothing. Someone
        always moves a stage: a person, or ``SYSTEM`` for jobs (never the "public" of a form
        submission). A reason the system writes is given in both languages (server/i18n.py).

        ``move_stage`` writes the plan; a caller that replaces the lead anyway (a follow-up) merges
        ``changes`` into its own replacement and writes ``event`` with its own, so the move costs
        no extra command."""
        if actor is None:
            raise ValueError("a stage change needs an actor: the person, or server.actor.SYSTEM in jobs")
        current = lead["stage"]
        if to not in allowed_targets(current):
            raise Conflict("lead.invalid_transition", params={"from": current, "to": to}, details=[detail("to", "allowed", text="allowed_moves", value=",".join(allowed_targets(current)), allowed=", ".join(allowed_targets(current)))])
        if (current, to) in REASON_REQUIRED and not reason:
            raise Invalid("lead.reason_required", details=[detail("reason", "required", text="move_reason_required")])
        if expected_version is not None and expected_version != lead["version"]:
            raise VersionMismatch("lead.version_mismatch")
        now = at or self._clock.now()
        changes = {"stage": to, "stage_changed_at": now, "updated_at": now, **(extra or {})}
        if to == "won_back":
            changes["winback_candidate"] = False  # back: off the win-back list
        if to in CUSTOMER_STAGES and not lead.get("last_activity_at"):
            # A new customer's silence (churn warnings) counts from the day they signed.
            changes["last_activity_at"] = now
        delta = 0
        if lead.get("owner_id") and (current in OPEN_STAGES) != (to in OPEN_STAGES):
            delta = +1 if to in OPEN_STAGES else -1
        doc = event(lead["_id"], "stage_changed", actor, {"from": current, "to": to, "reason": reason, **(event_data or {})}, at=now)
        return StageMove(lead, to, changes, doc, delta)

    async def apply_open_deltas(self, moves: builtins.list[StageMove], at: datetime) -> None:
        """The owners' open-lead counts after stage moves that were written: one command at most."""
        tallies: dict[str, OwnerTally] = {}
        for move in moves:
            if move.open_delta:
                tallies.setdefault(move.lead["owner_id"], OwnerTally()).open_leads += move.open_delta
        if tallies:
            await self._users.record_lead_changes(tallies, at)

    async def move_stage(
        self, lead: dict, to: str, actor: Actor, *, reason: str | dict[str, str] | None = None, expected_version: int | None = None,
        extra: dict | None = None, event_data: dict | None = None,
    ) -> dict:
        """The one place stages change: checks the machine, writes atomically, records the event
        (``event_data``: more fields of the ``stage_changed`` event, e.g. a lost reason's code)."""
        move = self.plan_stage(lead, to, actor, reason=reason, expected_version=expected_version, extra=extra, event_data=event_data)
        updated = await self.replace(lead, move.changes, {"stage": lead["stage"]})
        await self.apply_open_deltas([move], move.event["at"])
        await self._store.add_event(move.event)
        return updated

    async def move_stages(
        self, moves: builtins.list[tuple[dict, str, str | dict[str, str] | None]], actor: Actor = SYSTEM, now: datetime | None = None,
    ) -> builtins.list[dict | ApiError]:
        """The batch form for sweeps: each ``(lead, to, reason)`` is checked and written as
        ``move_stage`` would, then every event goes in one write and every owner's count in one.
        Returns, per move, the updated lead or the ``ApiError`` that refused it (changed meanwhile,
        or not allowed). ``now`` is the sweep's time (a job run with ``--now`` stamps with it)."""
        now = now or self._clock.now()
        results: list[dict | ApiError] = []
        done: list[StageMove] = []
        for lead, to, reason in moves:
            try:
                move = self.plan_stage(lead, to, actor, reason=reason, at=now)
                results.append(await self.replace(lead, move.changes, {"stage": lead["stage"]}))
                done.append(move)
            except ApiError as exc:
                results.append(exc)
        await self.apply_open_deltas(done, now)
        await self.add_events([m.event for m in done])
        return results

    async def timeline(self, actor: Actor, lead_id: str, limit: int, cursor: str | None) -> Page:
        lead = await self.get(actor, lead_id, {"_id": 1})
        return await paginate(self._events, {"lead_id": lead["_id"]}, limit=limit, cursor=cursor, sort_key="at")

    async def note_activity(self, lead_id: str, at: datetime) -> dict | None:
        """Something the customer did (a positive survey) counts as activity for the silence rule
        (churn warnings): ``last_activity_at`` moves on to ``at``, never back. None: no such lead."""
        for attempt in range(3):  # a concurrent edit of the lead: read it again and re-apply
            lead = await self._leads.find_one({"_id": lead_id})
            if lead is None:
                return None
            last = lead.get("last_activity_at")
            if last is not None and as_utc(last) >= at:
                return lead
            try:
                return await self.replace(lead, {"last_activity_at": at, "updated_at": at})
            except VersionMismatch:
                if attempt == 2:
                    raise
        return None  # pragma: no cover

    async def owner_changed(self, lead: dict) -> None:
        """After a lead changed hands: its follow-up task follows the new owner, or closes."""
        if self._tasks is not None:
            await self._tasks.sync_followup_task(lead)

    # ------------------------------------------------------------ changing hands (pool, allocation, reclaim)
    async def claim_from_pool(self, actor: Actor, lead_id: str, claimer_name: str, now: datetime) -> dict | None:
        """A rep takes a lead from their team's pool (their open-lead slot is already reserved by
        ``UserService.reserve_claim``). None: not in the pool for them (the caller explains)."""
        assignment = {"owner_id": actor.id, "rule_id": None, "strategy": "claim",
                      "reason": {"zh-CN": f"{claimer_name} 从公海领取", "en": f"{claimer_name} claimed it from the pool"}, "at": now}
        lead = await self._store.take_from_pool(str(lead_id)[:64], actor.team_id or "-", actor.id, assignment, now)
        if lead is None:
            return None
        # The slot was reserved as open; a customer gives it back. The claim reaches the owner-change listeners.
        tally = OwnerTally(open_leads=-1 if lead["stage"] not in OPEN_STAGES else 0, scope_entries=[lead["_id"]])
        await self._users.record_lead_changes({actor.id: tally}, now)
        await self.add_event(lead["_id"], "claimed", actor, {"owner_id": actor.id}, at=now)
        return lead

    async def release_to_pool(self, lead: dict, actor: Actor, reason: str, cooldown_days: int, now: datetime) -> dict | None:
        """The owner (or their manager) gives the lead back; they may not claim it again during the
        team's cool-down. None: it changed hands meanwhile."""
        previous = lead["owner_id"]
        cooldowns = {**(lead.get("cooldowns") or {}), previous: now + timedelta(days=cooldown_days)}
        release = {"by": actor.id, "previous_owner_id": previous, "reason": reason, "at": now}
        updated = await self._store.to_pool(lead["_id"], previous, release, cooldowns)
        if updated is None:
            return None
        tally = OwnerTally(open_leads=-1 if lead["stage"] in OPEN_STAGES else 0, scope_exits=[lead["_id"]])
        await self._users.record_lead_changes({previous: tally}, now)
        await self.owner_changed(updated)
        await self.add_event(lead["_id"], "released", actor, {"previous_owner_id": previous, "reason": reason}, at=now)
        return updated

    async def hand_over(self, lead: dict, actor: Actor, owner_id: str, reason: str | dict[str, str], now: datetime) -> dict | None:
        """A manager (own team) or admin gives the lead to someone. None: it changed hands meanwhile."""
        previous = lead.get("owner_id")
        assignment = {"owner_id": owner_id, "rule_id": None, "strategy": "manual", "reason": reason, "at": now}
        deadline = await self.first_contact_deadline(lead.get("team_id"), owner_id, lead["stage"], now)
        updated = await self._store.hand_over(lead["_id"], previous, owner_id, assignment, deadline)
        if updated is None:
            return None
        tallies: dict[str, OwnerTally] = {owner_id: OwnerTally(scope_entries=[lead["_id"]])}
        if lead["stage"] in OPEN_STAGES:
            tallies[owner_id].open_leads += 1
            if previous:
                tallies.setdefault(previous, OwnerTally()).open_leads -= 1
        if previous and previous != owner_id:
            tallies.setdefault(previous, OwnerTally()).scope_exits.append(lead["_id"])
        await self._users.record_lead_changes(tallies, now)
        await self.owner_changed(updated)
        await self.add_event(lead["_id"], "assigned", actor, {"owner_id": owner_id, "previous_owner_id": previous, "strategy": "manual", "reason": reason}, at=now)
        return updated

    async def owned_ids(self, owner_id: str, limit: int, stages: builtins.list[str] | None = None) -> builtins.list[str]:
        """Up to ``limit`` ids of leads ``owner_id`` owns (in ``stages``, if given): a hand-over's next batch."""
        filter_: dict[str, Any] = {"owner_id": owner_id}
        if stages is not None:
            filter_["stage"] = {"$in": stages}
        return [d["_id"] for d in await self._leads.find(filter_, {"_id": 1}).limit(limit).to_list(None)]

    async def hand_over_batch(
        self, *, lead_ids: builtins.list[str], handover_id: str, previous_owner: str, owner_id: str | None, actor: Actor,
        reason: dict[str, str], now: datetime, stamp: datetime, seq: int,
    ) -> int:
        """One batch of a hand-over (server/services/handover.py): the leads of ``lead_ids`` that
        ``previous_owner`` still owns go to ``owner_id``, or to their team's pool when it is None.
        Returns how many of them this hand-over moved.

        Safe to repeat with the same ids and ``seq`` (the hand-over records a batch before it runs
        it, and a batch cut short by a crash is run again): the move matches only leads
        ``previous_owner`` still owns; the leads this hand-over moved are read back by the
        ``handover_id`` in their assignment (or release); their ``assigned``/``released`` events
        have ids derived from the hand-over and the lead, so an event already written is not
        written twice; the owners' counts are guarded by ``seq``; the follow-up tasks follow their
        leads (or close, in the pool) with conditional writes."""
        if not lead_ids:
            return 0
        if owner_id is not None:
            change = {"owner_id": owner_id, "rule_id": None, "strategy": "handover", "reason": reason, "at": now, "handover_id": handover_id}
        else:
            change = {"by": actor.id, "previous_owner_id": previous_owner, "reason": reason, "at": now, "handover_id": handover_id}
        await self._store.hand_over_many(lead_ids, previous_owner, owner_id, change)
        docs = await self._leads.find({"_id": {"$in": lead_ids}}, {"owner_id": 1, "stage": 1, "assignment": 1, "release": 1}).to_list(None)
        moved = [d for d in docs if ((d.get("assignment") or {}).get("handover_id") if d.get("owner_id") else (d.get("release") or {}).get("handover_id")) == handover_id]
        if not moved:
            return 0
        events: list[dict] = []
        tallies: dict[str, OwnerTally] = {previous_owner: OwnerTally()}
        by_owner: dict[str | None, list[str]] = {}
        for lead in moved:
            new_owner = lead.get("owner_id")
            event_id = derived_event_id(f"handover:{handover_id}:{lead['_id']}", stamp)
            if new_owner:
                events.append(event(lead["_id"], "assigned", actor, {"owner_id": new_owner, "previous_owner_id": previous_owner, "strategy": "handover",
                                                                    "reason": reason, "handover_id": handover_id}, at=now, event_id=event_id))
            else:
                events.append(event(lead["_id"], "released", actor, {"previous_owner_id": previous_owner, "reason": reason, "handover_id": handover_id},
                                    at=now, event_id=event_id))
            open_ = lead.get("stage") in OPEN_STAGES
            tallies[previous_owner].open_leads -= 1 if open_ else 0
            tallies[previous_owner].scope_exits.append(lead["_id"])
            if new_owner:
                tallies.setdefault(new_owner, OwnerTally()).scope_entries.append(lead["_id"])
                tallies[new_owner].open_leads += 1 if open_ else 0
            by_owner.setdefault(new_owner, []).append(lead["_id"])
        await self._store.add_events_once(events)
        await self._users.record_lead_changes(tallies, now, once=(handover_id, seq))
        if self._tasks is not None:
            for new_owner, ids in by_owner.items():
                if new_owner:
                    await self._tasks.reassign_followup_tasks(ids, new_owner)
                else:
                    await self._tasks.close_followup_tasks(ids)
        return len(moved)

    async def assign_many(
        self, picks: builtins.list[tuple[dict, str, dict]], actor: Actor, bulk_id: str, now: datetime,
    ) -> builtins.list[tuple[dict, str]]:
        """A bulk assignment (``POST /leads/assign``): ``(lead as read, new owner, assignment)``
        each. The leads move in one command, each only if unchanged since it was read; then, for
        those that moved, the ``assigned`` events in one write, the owners' counts in one write, and
        the follow-up tasks one command per new owner. Returns ``(lead, owner)`` of those moved."""
        deadlines: dict[tuple, dict | None] = {}
        items = []
        for lead, owner_id, assignment in picks:
            key = (lead.get("team_id"), owner_id, lead.get("stage") in OPEN_STAGES)
            if key not in deadlines:
                deadlines[key] = await self.first_contact_deadline(lead.get("team_id"), owner_id, lead.get("stage", "new"), now)
            items.append((lead["_id"], lead.get("owner_id"), lead["version"], {**assignment, "bulk_id": bulk_id}, deadlines[key]))
        await self._store.assign_many(items)
        ids = [lead["_id"] for lead, _, _ in picks]
        moved = {d["_id"] for d in await self._leads.find({"_id": {"$in": ids}, "assignment.bulk_id": bulk_id}, {"_id": 1}).to_list(None)} if ids else set()
        done = [(lead, owner_id, assignment) for lead, owner_id, assignment in picks if lead["_id"] in moved]
        events: builtins.list[dict] = []
        tallies: dict[str, OwnerTally] = {}
        by_owner: dict[str, builtins.list[str]] = {}
        for lead, owner_id, assignment in done:
            previous = lead.get("owner_id")
            events.append(event(lead["_id"], "assigned", actor, {
                "owner_id": owner_id, "previous_owner_id": previous, "rule_id": assignment.get("rule_id"), "strategy": assignment["strategy"],
                "reason": assignment["reason"], "bulk_id": bulk_id,
            }, at=now))
            tallies.setdefault(owner_id, OwnerTally()).scope_entries.append(lead["_id"])
            if lead.get("stage") in OPEN_STAGES:
                tallies[owner_id].open_leads += 1
                if previous:
                    tallies.setdefault(previous, OwnerTally()).open_leads -= 1
            if previous and previous != owner_id:
                tallies.setdefault(previous, OwnerTally()).scope_exits.append(lead["_id"])
            by_owner.setdefault(owner_id, []).append(lead["_id"])
        await self.add_events(events)
        await self._users.record_lead_changes(tallies, now)
        if self._tasks is not None:
            for owner_id, lead_ids in by_owner.items():
                await self._tasks.reassign_followup_tasks(lead_ids, owner_id)
        return [(lead, owner_id) for lead, owner_id, _ in done]

    async def allocate_to_pool(self, lead_id: str, reason: dict[str, str], now: datetime) -> bool:
        """An unallocated lead no rule takes goes to its team's pool; False: allocated meanwhile."""
        return await self._store.allocate_to_pool(lead_id, {"result": "pool", "reason": reason, "at": now})

    async def allocate_to_owner(self, lead_id: str, assignment: dict, *, team_id: str | None = None, stage: str = "new") -> bool:
        """An unallocated lead to the owner a rule picked; False: allocated meanwhile. The caller
        writes the events and the owners' counts of its batch in one go each. The owner's
        first-contact deadline starts (``team_id``: the lead's team, whose settings give it)."""
        deadline = await self.first_contact_deadline(team_id, assignment["owner_id"], stage, assignment["at"])
        return await self._store.allocate_to_owner(lead_id, assignment, deadline)

    async def reclaim(self, due: builtins.list[tuple[dict, str]], cooldown_days: int | dict[str, int], now: datetime) -> builtins.list[dict]:
        """Leads nobody worked go back to their team's pool (the reclaim sweep, and the first-contact
        deadline's last step). One write for all, each lead guarded by the owner and version read, so
        a lead touched meanwhile stays; the events, the previous owners' counts and scope exits, and
        the follow-up tasks are one write each. ``cooldown_days``: for all, or per team id. Returns
        the leads reclaimed, as read."""
        items = []
        for lead, reason in due:
            owner = lead["owner_id"]
            days = cooldown_days if isinstance(cooldown_days, int) else cooldown_days.get(str(lead.get("team_id") or ""), 0)
            cooldowns = {**(lead.get("cooldowns") or {}), owner: now + timedelta(days=days)}
            release = {"by": "system", "previous_owner_id": owner, "reason": reason, "at": now}
            items.append((lead["_id"], owner, lead["version"], release, cooldowns))
        moved = set(await self._store.reclaim(items))
        done = [(lead, reason) for lead, reason in due if lead["_id"] in moved]
        tallies: dict[str, OwnerTally] = {}
        for lead, _ in done:
            tally = tallies.setdefault(lead["owner_id"], OwnerTally())
            tally.open_leads -= 1
            tally.scope_exits.append(lead["_id"])
        if done:
            await self.add_events([event(lead["_id"], "reclaimed", SYSTEM, {"previous_owner_id": lead["owner_id"], "reason": reason}, at=now) for lead, reason in done])
            await self._users.record_lead_changes(tallies, now)
            if self._tasks is not None:
                await self._tasks.close_followup_tasks([lead["_id"] for lead, _ in done])
        return [lead for lead, _ in done]

    # ------------------------------------------------------------ the first-contact deadline (server/services/first_contact.py)
    async def first_contact_deadline(self, team_id: str | None, owner_id: str, stage: str, now: datetime) -> dict | None:
        """The deadline of a lead just assigned to ``owner_id`` (None: not in an open stage, or the
        team has every step off). Team settings are cached: usually no command."""
        if stage not in OPEN_STAGES:
            return None
        return first_contact.deadline(await self._users.team_settings(team_id), owner_id, now, self._tz)

    async def advance_first_contact(self, steps: builtins.list[tuple[str, int, str, dict | None]]) -> None:
        await self._store.advance_first_contact(steps)

    async def add_events_once(self, docs: builtins.list[dict]) -> int:
        """Events with ids derived from what they record (``derived_event_id``): one already there is skipped."""
        return await self._store.add_events_once(docs) if docs else 0

    # ------------------------------------------------------------ bulk writes of other services' work
    async def insert_imported(self, docs: builtins.list[dict]) -> None:
        """New leads from an import, unordered (a ``BulkWriteError`` names the rows that failed)."""
        await self._store.insert_leads(docs)

    async def merge_imported(self, merges: builtins.list[tuple[str, builtins.list[str]]]) -> None:
        if merges:
            await self._store.merge_imported(merges)

    async def record_rfm(self, changes: builtins.list[tuple[str, str | None, dict]]) -> None:
        """The daily RFM scores: ``(lead_id, new layer or None, rfm)``."""
        if changes:
            await self._store.record_rfm(changes)

    async def add_lifetime_value(self, lead_id: str, amount_fen: int) -> None:
        """Money received from the customer (a payment): ``lifetime_value_fen`` grows by it."""
        if amount_fen:
            await self._store.add_lifetime_value(lead_id, amount_fen)

    async def set_lifetime_values(self, values: builtins.list[tuple[str, int]]) -> None:
        if values:
            await self._store.set_lifetime_values(values)

    async def upgrade_activity_order(self) -> int:
        """Start-up upgrade: leads from before ``updated_ms`` get it (lists sort on it)."""
        return await self._store.stamp_activity()

    async def reseal_phones(self, cipher: FieldCipher, batch_size: int = 500) -> int:
        return await self._store.reseal_phones(cipher, batch_size)

    async def claim_events_for_fold(self, event_ids: builtins.list, batch: str) -> None:
        await self._store.claim_for_fold(event_ids, batch)

    async def mark_events_folded(self, event_ids: builtins.list, batch: str) -> None:
        await self._store.mark_folded(event_ids, batch)

    # ------------------------------------------------------------ output
    @staticmethod
    def out(doc: dict) -> dict:
        return {**doc, "id": doc["_id"], "phone": doc.get("phone_masked")}


def _is_phone_field(form: dict, key: str) -> bool:
    return any(f["key"] == key and f["type"] == "phone" for f in form["fields"])
