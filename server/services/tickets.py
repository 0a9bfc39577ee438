"""After-sale service tickets (工单): the customer's problem, its conversation, dispatch and SLA.

States::

    open ──dispatch/assign──▶ assigned ──first staff reply / start──▶ in_progress ──resolve──▶ resolved ──close──▶ closed
      │                          │                                         ▲                      │
      └──────────────────────────┴─────────── resolve / close ─────────────┼──────────────────────┘
                                                                  reopen (within service.reopen_days)

Scope like leads: a customer sees their own tickets (``customer_id``), a rep the tickets assigned
to them or of the leads they own now (``lead_owner_id``, kept in step with the lead's owner by
``follow_lead_owners``, which hears of every change of hands from ``UserService.record_lead_changes``),
a manager their team's, an admin all; anything else is "not found". Customers never see
internal replies, nor the staff-only fields of a ticket (``out``).

Every change is one version-guarded replacement (412 when the client's version is stale; tickets
carry datetimes, so they are written whole, never with ``$set``), and one timeline event on the
lead (``ticket_opened``, ``ticket_assigned``, ``ticket_replied``, ``ticket_resolved``,
``ticket_reopened``, ``ticket_closed``, ``ticket_breached``; the service report folds them).

SLA: ``first_response_due_at`` and ``resolution_due_at`` in business hours of the team
(``service.sla`` by priority, ``business_hours``). ``sla`` holds the next step the ``ticket_sla``
job must take (``{next_at, step, after}``: a due-soon reminder or a breach of one of the two
targets); the job claims a step with a conditional update on ``(version, sla.step)``, so of any
number of schedulers exactly one records a breach, writes its event and escalates it.
"""

from __future__ import annotations

import builtins
import logging
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from config.settings import Settings
from server.actor import SYSTEM, Actor, require_role
from server.clock import Clock, as_utc
from server.errors import ApiError, Conflict, Invalid, NotFound, VersionMismatch, detail
from server.ids import maybe_oid
from server.paging import Page, paginate
from server.schemas.team_settings import TeamSettings
from server.schemas.tickets import CATEGORIES, OPEN_STATUSES, ReplyCreate, TicketCreate, TicketQuery
from server.services.business_hours import add_business_hours
from server.services.leads import LeadService, event
from server.services.notifications import NotificationService, notification
from server.services.users import UserService

log = logging.getLogger("mpcrm.tickets")

MAX_REPLIES = 200  # a conversation answered whole by GET /tickets/{id}
SLA_BATCH = 200  # tickets one ticket_sla run looks at
DISPATCH_BATCH = 50  # tickets left undispatched that one run dispatches
DISPATCH_GRACE = timedelta(seconds=10)  # the request dispatches; the sweep takes what it left
STAFF_ONLY_FIELDS = ("assignee_id", "assignment", "breached", "escalated", "resolution_note", "team_id")


def _ms(at: datetime) -> int:
    return int(as_utc(at).timestamp() * 1000)


def sla_steps(ticket: dict, due_soon_min: int) -> list[tuple[str, str, datetime]]:
    """Every SLA step of a ticket still to be met, ``(step, target, at)`` earliest first: a due-soon
    reminder ``due_soon_min`` before each target and its breach at the due time."""
    if ticket.get("status") not in OPEN_STATUSES:
        return []
    out: list[tuple[str, str, datetime]] = []
    targets = []
    if ticket.get("first_response_at") is None and ticket.get("first_response_due_at"):
        targets.append(("first_response", as_utc(ticket["first_response_due_at"])))
    if ticket.get("resolution_due_at"):
        targets.append(("resolution", as_utc(ticket["resolution_due_at"])))
    for which, due in targets:
        if due_soon_min:
            out.append(("due_soon", which, due - timedelta(minutes=due_soon_min)))
        out.append(("breach", which, due))
    return sorted(out, key=lambda s: (s[2], s[0] != "breach"))


def next_sla(ticket: dict, due_soon_min: int, after: int) -> dict:
    """The ``sla`` sub-document: the first step after ``after`` (epoch ms), or none left."""
    for step, which, at in sla_steps(ticket, due_soon_min):
        if _ms(at) > after:
            return {"next_at": at, "step": f"{which}:{step}@{_ms(at)}", "after": after}
    return {"next_at": None, "step": None, "after": after}


class TicketService:
    def __init__(
        self, *, tickets, ticket_replies, leads_view, users_view, clock: Clock, settings: Settings, leads: LeadService, users: UserService,
        allocation, notifications: NotificationService, churn_signals, uploads=None, surveys=None,
    ) -> None:
        self._col = tickets
        self._replies = ticket_replies
        self._leads_col = leads_view  # read-only: the customer's lead; timeline writes go through LeadService
        self._users_col = users_view  # read-only: assignees, the team's managers
        self._clock = clock
        self._settings = settings
        self._leads = leads
        self._users = users
        self._allocation = allocation  # AllocationService.dispatch_ticket
        self._notifications = notifications
        self._churn = churn_signals
        self._uploads = uploads
        self._surveys = surveys  # SurveyService: a resolved ticket offers the customer a survey
        if uploads is not None:
            uploads.register_access("ticket", self.may_see)
            uploads.register_access("ticket_reply", self.may_see_reply)
        users.on_lead_owner_change(self.follow_lead_owners)

    # ------------------------------------------------------------ scope
    @staticmethod
    def scope(actor: Actor) -> dict:
        if actor.is_admin:
            return {}
        if actor.is_manager:
            return {"team_id": actor.team_id or "-"}
        if actor.role == "rep":
            return {"$or": [{"assignee_id": actor.id}, {"lead_owner_id": actor.id}]}
        if actor.role == "customer":
            return {"customer_id": actor.id}
        return {"_id": None}

    async def get(self, actor: Actor, ticket_id: str) -> dict:
        scope = self.scope(actor)
        filter_ = {"$and": [{"_id": str(ticket_id)[:64]}, scope]} if scope else {"_id": str(ticket_id)[:64]}
        doc = await self._col.find_one(filter_)
        if doc is None:
            raise NotFound("ticket.not_found")
        return doc

    async def exists(self, ticket_id: str) -> bool:
        return await self._col.find_one({"_id": ticket_id}, {"_id": 1}) is not None

    async def may_see(self, actor: Actor, ticket_id: str) -> bool:
        """Whether ``actor`` may see ticket ``ticket_id`` (and so its attachments)."""
        try:
            await self.get(actor, ticket_id)
        except NotFound:
            return False
        return True

    async def may_see_reply(self, actor: Actor, reply_id: str) -> bool:
        """A reply's attachments: whoever may see its ticket, but an internal reply's to staff only."""
        oid = maybe_oid(reply_id)
        reply = await self._replies.find_one({"_id": oid}, {"ticket_id": 1, "internal": 1}) if oid is not None else None
        if reply is None or (reply.get("internal") and not actor.is_staff):
            return False
        return await self.may_see(actor, reply["ticket_id"])

    async def follow_lead_owners(self, moves: dict[str, str | None], at: datetime) -> None:
        """Leads changed hands (``{lead_id: new owner or None}``, reported by
        ``UserService.record_lead_changes``): their tickets, open and closed, follow, so the new
        owner sees them and the previous one no longer does. One command for the whole report.

        Not an edit of the ticket: ``version`` stays (a handler's pending change still applies);
        a whole-ticket replacement read before this is guarded by ``lead_owner_id`` (``_replace``)."""
        ops = UserService.owner_follow_ops(moves, "lead_owner_id")
        if ops:
            await self._col.bulk_write(ops, ordered=False)

    # ------------------------------------------------------------ reads
    async def list(self, actor: Actor, query: TicketQuery) -> Page:
        filter_: dict[str, Any] = {}
        for name in ("status", "priority", "category", "assignee_id", "lead_id"):
            value = getattr(query, name)
            if value is not None:
                filter_[name] = value
        if query.breached is not None:
            filter_["is_breached"] = query.breached
        scope = self.scope(actor)
        if "$or" in scope:
            filter_["$or"] = scope["$or"]
        else:
            for key, value in scope.items():
                filter_[key] = value if key not in filter_ or filter_[key] == value else {"$in": []}  # never widen
        return await paginate(self._col, filter_, limit=query.limit, cursor=query.cursor)

    async def with_replies(self, actor: Actor, ticket_id: str) -> tuple[dict, builtins.list[dict]]:
        ticket = await self.get(actor, ticket_id)
        filter_: dict[str, Any] = {"ticket_id": ticket["_id"]}
        if not actor.is_staff:
            filter_["internal"] = False
        replies = await self._replies.find(filter_).sort("created_at", 1).limit(MAX_REPLIES).to_list(None)
        return ticket, replies

    # ------------------------------------------------------------ create
    async def _customer_lead(self, actor: Actor, lead_id: str | None) -> dict:
        """A customer's lead: one they created through a form (``customer_ids``); their latest when
        they name none."""
        if lead_id is not None:
            lead = await self._leads_col.find_one({"_id": lead_id, "customer_ids": actor.id})
            if lead is None:
                raise NotFound("lead.not_found")
            return lead
        found = await self._leads_col.find({"customer_ids": actor.id}).sort("created_at", -1).limit(1).to_list(None)
        if not found:
            raise Conflict("ticket.no_lead")
        return found[0]

    async def _attach(self, actor: Actor, upload_ids: builtins.list[str], kind: str, target_id: str) -> builtins.list[dict]:
        if not upload_ids:
            return []
        if self._uploads is None:
            raise Invalid("upload.unknown", details=[detail("attachments", "unknown", text="upload_unknown")])
        return await self._uploads.attach(actor, upload_ids, kind=kind, target_id=target_id)

    def _dues(self, settings: TeamSettings, priority: str, start: datetime) -> tuple[datetime, datetime]:
        target = settings.service.sla[priority]  # type: ignore[index]
        week, tz = settings.business_hours, self._settings.tz
        return add_business_hours(start, target.first_response_h, week, tz), add_business_hours(start, target.resolution_h, week, tz)

    async def create(self, actor: Actor, data: TicketCreate, ticket_id: str | None = None) -> dict:
        if actor.role == "customer":
            lead = await self._customer_lead(actor, data.lead_id)
        else:
            if data.lead_id is None:
                raise Invalid("ticket.lead_required", details=[detail("lead_id", "required", text="ticket_lead_required")])
            lead = await self._leads.get(actor, data.lead_id)
        ticket_id = ticket_id or str(ObjectId())
        now = self._clock.now()
        team_settings = await self._users.team_settings(lead.get("team_id"))
        first_due, resolution_due = self._dues(team_settings, data.priority, now)
        attachments = await self._attach(actor, data.attachments, "ticket", ticket_id)
        doc: dict[str, Any] = {
            "_id": ticket_id,
            "lead_id": lead["_id"],
            "team_id": lead.get("team_id"),
            "lead_owner_id": lead.get("owner_id"),
            "customer_id": actor.id if actor.role == "customer" else None,
            "opened_by": "customer" if actor.role == "customer" else "staff",
            "category": data.category,
            "priority": data.priority,
            "title": data.title,
            "description": data.description,
            "attachments": attachments,
            "status": "open",
            "assignee_id": None,
            "assignment": None,
            "awaiting_dispatch": True,
            "first_response_due_at": first_due,
            "resolution_due_at": resolution_due,
            "first_response_at": None,
            "resolved_at": None,
            "closed_at": None,
            "breached": [],
            "is_breached": False,
            "escalated": False,
            "escalated_to": [],
            "reopen_count": 0,
            "reply_count": 0,
            "version": 1,
            "created_by": actor.id,
            "created_at": now,
            "updated_at": now,
        }
        doc["sla"] = next_sla(doc, team_settings.service.due_soon_min, _ms(now) - 1)
        try:
            await self._col.insert_one(doc)
        except DuplicateKeyError:
            existing = await self._col.find_one({"_id": ticket_id, "created_by": actor.id})
            if existing is None:
                raise Conflict("ticket.id_taken") from None
            return existing
        # The lead may have changed hands since it was read, before this ticket was there to follow it.
        current = await self._leads_col.find_one({"_id": lead["_id"]}, {"owner_id": 1})
        if current is not None and current.get("owner_id") != doc["lead_owner_id"]:
            await self.follow_lead_owners({lead["_id"]: current.get("owner_id")}, now)
            doc["lead_owner_id"] = current.get("owner_id")
        events = [event(lead["_id"], "ticket_opened", actor, {
            "ticket_id": ticket_id, "category": data.category, "priority": data.priority, "title": data.title, "by": doc["opened_by"],
        }, at=now)]
        try:
            doc, assigned = await self._dispatch(doc, lead, now)
            events.extend(assigned)
        except Exception:  # the sweep in ticket_sla dispatches it; the customer's ticket is in
            log.warning("ticket dispatch failed; the sweep will retry", exc_info=True, extra={"ticket_id": ticket_id})
        await self._leads.add_events(events)
        if data.category == "complaint":
            await self._churn.flag(lead["_id"], "complaint", {"ticket_id": ticket_id}, now)
        return doc

    # ------------------------------------------------------------ dispatch and assignment
    async def _dispatch(self, ticket: dict, lead: dict, now: datetime, *, actor: Actor = SYSTEM, require: bool = False) -> tuple[dict, builtins.list[dict]]:
        """Ask the allocation engine for a handler; record the decision. Nobody: the team's
        managers are told (or, ``require``, 409 and nothing written)."""
        decision = await self._allocation.dispatch_ticket(ticket, lead, now)
        if not decision.get("assignee_id"):
            if require:
                raise Conflict("ticket.nobody_available")
            assignment = {"assignee_id": None, "rule_id": decision.get("rule_id"), "strategy": decision.get("strategy") or "none", "reason": decision.get("reason"), "at": now}
            updated = await self._replace(ticket, {"assignment": assignment, "awaiting_dispatch": False, "updated_at": now})
            managers = (await self._users.active_managers([ticket.get("team_id")])).get(str(ticket.get("team_id")), [])
            await self._notifications.notify([
                notification(m, "ticket_unassigned", f"工单待分派：{ticket['title']}"[:60], "没有可分派的售后人员，请指派",
                             f"ticket:{ticket['_id']}:unassigned:{ticket['version']}:{m}", data={"ticket_id": ticket["_id"], "lead_id": ticket["lead_id"]})
                for m in managers
            ], now)
            return updated, []
        return await self._assign(ticket, decision, actor, now)

    async def _assign(self, ticket: dict, decision: dict, actor: Actor, now: datetime) -> tuple[dict, builtins.list[dict]]:
        previous = ticket.get("assignee_id")
        assignee = decision["assignee_id"]
        assignment = {"assignee_id": assignee, "rule_id": decision.get("rule_id"), "strategy": decision.get("strategy"), "reason": decision.get("reason"), "at": now}
        status = "assigned" if ticket["status"] == "open" else ticket["status"]
        updated = await self._replace(ticket, {"assignee_id": assignee, "assignment": assignment, "status": status, "awaiting_dispatch": False, "updated_at": now})
        data = {
            "ticket_id": ticket["_id"], "assignee_id": assignee, "previous_assignee_id": previous, "strategy": assignment["strategy"],
            "rule_id": assignment["rule_id"], "reason": assignment["reason"], "escalated": bool(ticket.get("escalated")),
        }
        if assignee != actor.id:
            await self._notifications.notify([notification(
                assignee, "ticket_assigned", f"新工单：{ticket['title']}"[:60], f"{_category_label(ticket['category'])} · {ticket['priority']}",
                f"ticket:{ticket['_id']}:assigned:{updated['version']}", data={"ticket_id": ticket["_id"], "lead_id": ticket["lead_id"]},
            )], now)
        return updated, [event(ticket["lead_id"], "ticket_assigned", actor, data, at=now)]

    async def _assignee_user(self, ticket: dict, assignee_id: str) -> dict:
        oid = maybe_oid(assignee_id)
        user = await self._users_col.find_one({"_id": oid}, {"team_id": 1, "role": 1, "active": 1, "name": 1}) if oid else None
        if (user is None or not user.get("active", True) or user.get("role") not in ("rep", "manager")
                or str(user.get("team_id") or "") != str(ticket.get("team_id") or "")):
            raise Invalid("ticket.bad_assignee", details=[detail("assignee_id", "outside_team", text="assignee_not_in_team")])
        return user

    async def assign(self, actor: Actor, ticket_id: str, version: int, assignee_id: str | None) -> dict:
        """A manager (own team) or admin gives the ticket to someone, or has it dispatched again."""
        require_role(actor, "manager", "admin")
        ticket = await self.get(actor, ticket_id)
        self._check_version(ticket, version)
        if ticket["status"] not in OPEN_STATUSES:
            raise Conflict("ticket.not_open", params={"status": ticket["status"]})
        now = self._clock.now()
        if assignee_id is None:
            lead = await self._leads_col.find_one({"_id": ticket["lead_id"]}) or {"_id": ticket["lead_id"], "team_id": ticket.get("team_id")}
            updated, events = await self._dispatch(ticket, lead, now, actor=actor, require=True)
        else:
            user = await self._assignee_user(ticket, assignee_id)
            name = actor.name or actor.id
            reason = {"zh-CN": f"{name} 指派给 {user.get('name') or assignee_id}", "en": f"assigned by {name} to {user.get('name') or assignee_id}"}
            updated, events = await self._assign(ticket, {"assignee_id": assignee_id, "rule_id": None, "strategy": "manual", "reason": reason}, actor, now)
        await self._leads.add_events(events)
        return updated

    async def hand_over(self, from_user_id: str, to_user_id: str | None, actor: Actor, limit: int) -> int:
        """A leaving rep's open tickets go to ``to_user_id`` (None: dispatched again by rule), up to
        ``limit`` of them; returns how many changed hands. A ticket changed meanwhile is left for
        the next call."""
        tickets = await self._col.find({"assignee_id": from_user_id, "status": {"$in": list(OPEN_STATUSES)}}).limit(limit).to_list(None)
        now = self._clock.now()
        moved = 0
        events: list[dict] = []
        name = actor.name or actor.id
        for ticket in tickets:
            try:
                if to_user_id is None:
                    lead = await self._leads_col.find_one({"_id": ticket["lead_id"]}) or {"_id": ticket["lead_id"], "team_id": ticket.get("team_id")}
                    _, done = await self._dispatch(ticket, lead, now, actor=actor, require=True)
                else:
                    reason = {"zh-CN": f"{name} 办理交接", "en": f"handed over by {name}"}
                    _, done = await self._assign(ticket, {"assignee_id": to_user_id, "rule_id": None, "strategy": "handover", "reason": reason}, actor, now)
            except ApiError:
                continue  # changed meanwhile, or nobody to dispatch to: it stays with its handler
            events.extend(done)
            moved += 1
        await self._leads.add_events(events)
        return moved

    # ------------------------------------------------------------ the conversation
    async def reply(self, actor: Actor, ticket_id: str, data: ReplyCreate) -> dict:
        if data.internal and not actor.is_staff:
            raise Invalid("ticket.internal_staff_only", details=[detail("internal", "staff_only")])
        ticket = await self.get(actor, ticket_id)
        if ticket["status"] == "closed":
            raise Conflict("ticket.closed")
        if ticket.get("reply_count", 0) >= MAX_REPLIES:
            raise Conflict("ticket.reply_limit", params={"limit": MAX_REPLIES})
        reply_id = ObjectId()
        attachments = await self._attach(actor, data.attachments, "ticket_reply", str(reply_id))
        public_staff_reply = actor.is_staff and not data.internal
        for attempt in range(3):  # a concurrent change of the ticket (another reply, the SLA job): read again
            now = self._clock.now()
            first = public_staff_reply and ticket.get("first_response_at") is None
            changes: dict[str, Any] = {"reply_count": ticket.get("reply_count", 0) + 1, "last_reply_at": now, "updated_at": now}
            if public_staff_reply and ticket["status"] in ("open", "assigned"):
                changes["status"] = "in_progress"
            if first:
                changes["first_response_at"] = now
                changes["first_response_s"] = int((now - as_utc(ticket["created_at"])).total_seconds())
            if first:
                settings = await self._users.team_settings(ticket.get("team_id"))
                changes["sla"] = next_sla({**ticket, **changes}, settings.service.due_soon_min, (ticket.get("sla") or {}).get("after", 0))
            try:
                updated = await self._replace(ticket, changes)
                break
            except VersionMismatch:
                if attempt == 2:
                    raise
                ticket = await self.get(actor, ticket_id)
                if ticket["status"] == "closed":
                    raise Conflict("ticket.closed") from None
        doc = {
            "_id": reply_id, "ticket_id": ticket["_id"], "author_id": actor.id, "author_role": actor.role, "internal": bool(data.internal),
            "body": data.body, "attachments": attachments, "created_at": now,
        }
        await self._replies.insert_one(doc)
        await self._leads.add_event(ticket["lead_id"], "ticket_replied", actor, {
            "ticket_id": ticket["_id"], "author_role": "customer" if actor.role == "customer" else actor.role, "internal": bool(data.internal),
            "first_response": first, "first_response_s": changes.get("first_response_s") if first else None, "assignee_id": ticket.get("assignee_id"),
        }, at=now)
        await self._notify_reply(actor, updated, doc, now)
        return doc

    async def _notify_reply(self, actor: Actor, ticket: dict, reply: dict, now: datetime) -> None:
        """Who hears of a reply (never its text): the customer of a staff reply that is not
        internal; the handler (or, with none, the team's managers) of the customer's replies and of
        colleagues' internal notes."""
        key = f"ticket-reply:{reply['_id']}"
        title = f"工单有新回复：{ticket['title']}"[:60]
        if actor.role == "customer":
            staff = [ticket["assignee_id"]] if ticket.get("assignee_id") else (await self._users.active_managers([ticket.get("team_id")])).get(str(ticket.get("team_id")), [])
            items = [notification(u, "ticket_replied", title, "客户回复了工单", f"{key}:{u}", data={"ticket_id": ticket["_id"], "lead_id": ticket["lead_id"]}) for u in staff]
        elif reply["internal"]:
            assignee = ticket.get("assignee_id")
            items = [notification(assignee, "ticket_replied", title, "同事添加了内部备注", f"{key}:{assignee}", data={"ticket_id": ticket["_id"], "lead_id": ticket["lead_id"]})] if assignee and assignee != actor.id else []
        else:
            customer = ticket.get("customer_id")
            items = [notification(customer, "ticket_customer_update", title, "客服回复了你的工单", f"{key}:{customer}", data={"ticket_id": ticket["_id"]})] if customer else []
        await self._notifications.notify(items, now)

    # ------------------------------------------------------------ state changes
    @staticmethod
    def _check_version(ticket: dict, version: int) -> None:
        if ticket["version"] != version:
            raise VersionMismatch("ticket.version_mismatch")

    async def _replace(self, ticket: dict, changes: dict) -> dict:
        """The ticket as read plus ``changes``, as one version-guarded replacement. Its lead may
        have changed hands since it was read (``follow_lead_owners`` keeps the version): the
        replacement also matches the ``lead_owner_id`` read, and takes the current one if that alone
        moved, so it never puts a previous owner back."""
        for _ in range(3):
            new = {**ticket, **changes, "version": ticket["version"] + 1}
            guard = {"_id": ticket["_id"], "version": ticket["version"], "lead_owner_id": ticket.get("lead_owner_id")}
            updated = await self._col.find_one_and_replace(guard, new, return_document=ReturnDocument.AFTER)
            if updated is not None:
                return updated
            fresh = await self._col.find_one({"_id": ticket["_id"], "version": ticket["version"]}, {"lead_owner_id": 1})
            if fresh is None:
                break
            ticket = {**ticket, "lead_owner_id": fresh.get("lead_owner_id")}
        raise VersionMismatch("ticket.version_mismatch")

    async def start(self, actor: Actor, ticket_id: str, version: int) -> dict:
        require_role(actor, "rep", "manager", "admin")
        ticket = await self.get(actor, ticket_id)
        self._check_version(ticket, version)
        if ticket["status"] not in ("open", "assigned"):
            raise Conflict("ticket.invalid_transition", params={"from": ticket["status"], "to": "in_progress"})
        return await self._replace(ticket, {"status": "in_progress", "updated_at": self._clock.now()})

    async def resolve(self, actor: Actor, ticket_id: str, version: int, note: str | None) -> dict:
        require_role(actor, "rep", "manager", "admin")
        ticket = await self.get(actor, ticket_id)
        self._check_version(ticket, version)
        if ticket["status"] not in OPEN_STATUSES:
            raise Conflict("ticket.invalid_transition", params={"from": ticket["status"], "to": "resolved"})
        now = self._clock.now()
        breached = list(ticket.get("breached") or [])
        first_at = ticket.get("first_response_at")
        late_first = "first_response" in breached or (ticket.get("first_response_due_at") is not None and as_utc(first_at or now) > as_utc(ticket["first_response_due_at"]))
        late_resolution = "resolution" in breached or (ticket.get("resolution_due_at") is not None and now > as_utc(ticket["resolution_due_at"]))
        for which, late in (("first_response", late_first), ("resolution", late_resolution)):
            if late and which not in breached:
                breached.append(which)
        changes = {
            "status": "resolved", "resolved_at": now, "resolution_note": note, "updated_at": now, "breached": breached, "is_breached": bool(breached),
            "sla": {"next_at": None, "step": None, "after": (ticket.get("sla") or {}).get("after", 0)},
        }
        updated = await self._replace(ticket, changes)
        await self._leads.add_event(ticket["lead_id"], "ticket_resolved", actor, {
            "ticket_id": ticket["_id"], "assignee_id": ticket.get("assignee_id"), "resolution_s": int((now - as_utc(ticket["created_at"])).total_seconds()),
            "breached_first_response": late_first, "breached_resolution": late_resolution,
        }, at=now)
        # A resolved ticket is activity with the customer: the silence rule counts from it.
        await self._leads.note_activity(ticket["lead_id"], now)
        if ticket.get("customer_id"):
            await self._notifications.notify([notification(
                ticket["customer_id"], "ticket_customer_update", f"工单已解决：{ticket['title']}"[:60], "如仍有问题，可重新打开工单",
                f"ticket:{ticket['_id']}:resolved:{updated['version']}", data={"ticket_id": ticket["_id"]},
            )], now)
        if self._surveys is not None:
            await self._surveys.offer(lead_id=ticket["lead_id"], customer_id=ticket.get("customer_id"), team_id=ticket.get("team_id"),
                                      source="ticket", source_id=ticket["_id"], now=now)
        return updated

    async def reopen(self, actor: Actor, ticket_id: str, version: int, reason: str | None) -> dict:
        """The customer (or staff) reopens a resolved ticket within ``service.reopen_days`` of its
        resolution; later, or from another state, 409 and nothing written."""
        ticket = await self.get(actor, ticket_id)
        self._check_version(ticket, version)
        if ticket["status"] != "resolved":
            raise Conflict("ticket.closed" if ticket["status"] == "closed" else "ticket.invalid_transition", params={"from": ticket["status"], "to": "in_progress"})
        now = self._clock.now()
        settings = await self._users.team_settings(ticket.get("team_id"))
        days = settings.service.reopen_days
        if now > as_utc(ticket["resolved_at"]) + timedelta(days=days):
            raise Conflict("ticket.reopen_window_passed", params={"days": days})
        target = settings.service.sla[ticket["priority"]]
        changes: dict[str, Any] = {
            "status": "in_progress", "reopened_at": now, "reopen_count": ticket.get("reopen_count", 0) + 1, "resolved_at": None,
            "resolution_note": None, "updated_at": now,
            "resolution_due_at": add_business_hours(now, target.resolution_h, settings.business_hours, self._settings.tz),
        }
        changes["sla"] = next_sla({**ticket, **changes}, settings.service.due_soon_min, _ms(now) - 1)
        updated = await self._replace(ticket, changes)
        await self._leads.add_event(ticket["lead_id"], "ticket_reopened", actor, {"ticket_id": ticket["_id"], "reason": reason}, at=now)
        if ticket.get("assignee_id"):
            await self._notifications.notify([notification(
                ticket["assignee_id"], "ticket_assigned", f"工单被重新打开：{ticket['title']}"[:60], "请继续处理",
                f"ticket:{ticket['_id']}:reopened:{updated['version']}", data={"ticket_id": ticket["_id"], "lead_id": ticket["lead_id"]},
            )], now)
        await self._churn.flag(ticket["lead_id"], "reopened", {"ticket_id": ticket["_id"]}, now)
        return updated

    async def close(self, actor: Actor, ticket_id: str, version: int) -> dict:
        ticket = await self.get(actor, ticket_id)
        self._check_version(ticket, version)
        if ticket["status"] == "closed":
            raise Conflict("ticket.closed")
        now = self._clock.now()
        updated = await self._replace(ticket, {
            "status": "closed", "closed_at": now, "updated_at": now, "sla": {"next_at": None, "step": None, "after": (ticket.get("sla") or {}).get("after", 0)},
        })
        await self._leads.add_event(ticket["lead_id"], "ticket_closed", actor, {"ticket_id": ticket["_id"]}, at=now)
        return updated

    # ------------------------------------------------------------ the ticket_sla job
    async def dispatch_waiting(self, now: datetime, limit: int = DISPATCH_BATCH) -> int:
        """Tickets whose request did not get to dispatch them (an instance died): dispatch now."""
        waiting = await self._col.find({"awaiting_dispatch": True, "created_at": {"$lte": now - DISPATCH_GRACE}}).sort("created_at", 1).limit(limit).to_list(None)
        done = 0
        events: list[dict] = []
        for ticket in waiting:
            lead = await self._leads_col.find_one({"_id": ticket["lead_id"]}) or {"_id": ticket["lead_id"], "team_id": ticket.get("team_id")}
            try:
                _, assigned = await self._dispatch(ticket, lead, now)
            except ApiError:
                continue  # dispatched meanwhile
            events.extend(assigned)
            done += 1
        await self._leads.add_events(events)
        return done

    async def check_sla(self, now: datetime, limit: int = SLA_BATCH) -> dict:
        """Every SLA step that has come, once: due-soon reminders to the handler, breaches recorded
        on the ticket (``breached``) with a ``ticket_breached`` event, the handler told and the
        team's managers escalated to. Each ticket's step is claimed by one conditional update."""
        due = await self._col.find({"sla.next_at": {"$lte": now}}).sort("sla.next_at", 1).limit(limit).to_list(None)
        if not due:
            return {"checked": 0, "due_soon": 0, "breached": 0}
        settings: dict[str, TeamSettings] = {}
        for team in {t.get("team_id") for t in due}:
            settings[team or ""] = await self._users.team_settings(team)
        plans = []
        for ticket in due:
            sla = ticket.get("sla") or {}
            minutes = settings[ticket.get("team_id") or ""].service.due_soon_min
            after = int(sla.get("after", 0))
            come = [(step, which, at) for step, which, at in sla_steps(ticket, minutes) if after < _ms(at) <= _ms(now)]
            breaches = [which for step, which, _ in come if step == "breach" and which not in (ticket.get("breached") or [])]
            soon = [which for step, which, _ in come if step == "due_soon" and not any(s == "breach" and w == which for s, w, _ in come)]
            new_after = max([after, *(_ms(at) for _, _, at in come)])
            plans.append((ticket, minutes, breaches, soon, new_after, come))
        managers = await self._users.active_managers([t.get("team_id") for t, _, breaches, soon, *_ in plans if breaches or (soon and not t.get("assignee_id"))])
        events: list[dict] = []
        items: list[dict] = []
        counts = {"checked": len(due), "due_soon": 0, "breached": 0}
        for ticket, minutes, breaches, soon, new_after, come in plans:
            team_managers = managers.get(str(ticket.get("team_id")), [])
            breached = [*(ticket.get("breached") or []), *breaches]
            nxt = next_sla({**ticket, "breached": breached}, minutes, new_after)
            update: dict[str, Any] = {"$set": {"sla": nxt}}
            if breaches:
                escalated_to = sorted({*(ticket.get("escalated_to") or []), *team_managers})
                update["$set"].update({"breached": breached, "is_breached": True, "escalated": True, "escalated_to": escalated_to})
                update["$inc"] = {"version": 1}
            claim = {"_id": ticket["_id"], "version": ticket["version"], "sla.step": (ticket.get("sla") or {}).get("step")}
            result = await self._col.update_one(claim, update)
            if result.modified_count != 1:
                continue  # another scheduler took this step, or the ticket changed: the next run reads it again
            assignee = ticket.get("assignee_id")
            data = {"ticket_id": ticket["_id"], "lead_id": ticket["lead_id"]}
            for step, which, at in come:
                stamp = f"{which}@{_ms(at)}"
                if step == "breach" and which in breaches:
                    counts["breached"] += 1
                    events.append(event(ticket["lead_id"], "ticket_breached", SYSTEM, {
                        "ticket_id": ticket["_id"], "which": which, "assignee_id": assignee, "escalated_to": team_managers,
                    }, at=now))
                    label = "首次响应" if which == "first_response" else "解决"
                    if assignee:
                        items.append(notification(assignee, "ticket_breached", f"工单已超时（{label}）：{ticket['title']}"[:60], "已上报主管，请尽快处理",
                                                  f"ticket:{ticket['_id']}:breach:{stamp}:{assignee}", data={**data, "which": which}, urgent=True))
                    items.extend(
                        notification(m, "ticket_escalated", f"工单超时上报（{label}）：{ticket['title']}"[:60], "处理人未在时限内完成" if assignee else "工单无人处理",
                                     f"ticket:{ticket['_id']}:breach:{stamp}:{m}", data={**data, "which": which}, urgent=True)
                        for m in team_managers if m != assignee
                    )
                elif step == "due_soon" and which in soon:
                    counts["due_soon"] += 1
                    label = "首次响应" if which == "first_response" else "解决"
                    targets = [assignee] if assignee else team_managers
                    items.extend(
                        notification(u, "ticket_due_soon", f"工单即将超时（{label}）：{ticket['title']}"[:60], f"{minutes} 分钟内到期",
                                     f"ticket:{ticket['_id']}:due_soon:{stamp}:{u}", data={**data, "which": which})
                        for u in targets
                    )
        await self._leads.add_events(events)
        await self._notifications.notify(items, now)
        return counts

    # ------------------------------------------------------------ output
    @staticmethod
    def out(actor: Actor, doc: dict) -> dict:
        out = {**doc, "id": str(doc["_id"]), "breached": list(doc.get("breached") or [])}
        if not actor.is_staff:
            for name in STAFF_ONLY_FIELDS:
                out[name] = None
        return out

    @staticmethod
    def reply_out(actor: Actor, doc: dict) -> dict:
        out = {**doc, "id": str(doc["_id"])}
        if not actor.is_staff and doc.get("author_id") != actor.id:
            out["author_id"] = None  # the customer sees that staff answered, not staff ids
        return out


def _category_label(code: str) -> str:
    return next((c["zh-CN"] for c in CATEGORIES if c["code"] == code), code)
