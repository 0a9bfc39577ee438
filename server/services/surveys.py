"""Satisfaction surveys (满意度调查): after a ticket is resolved, and after a contract starts.

A survey is offered once per source (``(source, source_id)`` is unique: a ticket resolved twice, or
two schedulers offering the same contract's survey, make one survey) to the customer account linked
to the lead, who is told by a subscribe message (kind ``survey_request``, where they accepted one)
and sees it in ``GET /surveys?status=pending``. It is answered once: the answer is a version- and
status-guarded replacement, so of two racing answers one wins and the other gets 409 with nothing
written. The answer goes on the lead's timeline (``survey_answered``, folded into the service
report); a low score (CSAT ≤ 2, else NPS ≤ 6) is a churn signal (``ChurnSignals.flag``, once per
survey); a positive one (CSAT ≥ 4 and NPS ≥ 9) counts as activity for the silence rule.

Staff read surveys scoped like leads: a rep those of the leads they own (the owner when the survey
was offered, refreshed when it is answered), a manager their team's, an admin all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from server.actor import Actor, scope_filter
from server.clock import Clock
from server.errors import Conflict, NotFound
from server.paging import Page, paginate
from server.schemas.surveys import SurveyAnswer, SurveyQuery
from server.services.leads import LeadService
from server.services.notifications import NotificationService, notification
from server.services.users import UserService

LOW_CSAT = 2  # at or below: the customer is unhappy (churn signal low_csat)
LOW_NPS = 6  # at or below: a detractor (churn signal low_nps)
POSITIVE_CSAT = 4  # at or above, with a promoter's NPS: counts as activity for the silence rule
PROMOTER_NPS = 9
SOURCES = ("ticket", "contract")


class ChurnSignalSink(Protocol):
    async def flag(self, lead_id: str, signal: str, data: dict, now: datetime) -> bool: ...


def survey_signal(csat: int, nps: int) -> str | None:
    """The churn signal a survey raises, at most one: ``low_csat`` first, else ``low_nps``."""
    if csat <= LOW_CSAT:
        return "low_csat"
    if nps <= LOW_NPS:
        return "low_nps"
    return None


def is_positive(csat: int, nps: int) -> bool:
    return csat >= POSITIVE_CSAT and nps >= PROMOTER_NPS


def _id_candidates(value: str) -> list[Any]:
    """An id as a string and, when it is one, as an ObjectId: whichever way its owner stores it."""
    out: list[Any] = [value]
    if ObjectId.is_valid(value) and len(value) == 24:
        out.append(ObjectId(value))
    return out


class SurveyService:
    def __init__(
        self, *, surveys, leads_view, tickets_view, clock: Clock, leads: LeadService, notifications: NotificationService,
        churn_signals: ChurnSignalSink | None = None, users: UserService | None = None,
    ) -> None:
        self._col = surveys
        self._leads_view = leads_view  # read-only: the lead's customer, owner and team; writes go through LeadService
        self._tickets = tickets_view  # read-only: who handled a ticket (TicketService owns tickets)
        self._clock = clock
        self._leads = leads
        self._notifications = notifications
        self._churn = churn_signals
        if users is not None:
            users.on_lead_owner_change(self.follow_lead_owners)

    async def follow_lead_owners(self, moves: dict[str, str | None], at: datetime) -> None:
        """Leads changed hands: their surveys follow (staff scope reads ``owner_id``)."""
        ops = UserService.owner_follow_ops(moves, "owner_id")
        if ops:
            await self._col.bulk_write(ops, ordered=False)

    # ------------------------------------------------------------ offering
    async def offer(
        self, *, lead_id: str, customer_id: str | None, team_id: str | None, source: str, source_id: str, now,
    ) -> dict | None:
        """One survey for ``(source, source_id)`` (a second offer returns the first); None when the
        lead is gone or has no customer account to ask. Safe to call twice or on two instances."""
        if source not in SOURCES:
            raise ValueError(f"survey source must be one of {SOURCES}")
        lead = await self._leads_view.find_one({"_id": lead_id}, {"customer_ids": 1, "owner_id": 1, "team_id": 1})
        if lead is None:
            return None
        customer = customer_id or next(iter(lead.get("customer_ids") or []), None)
        if not customer:
            return None
        handler = await self.ticket_handler(source_id) if source == "ticket" else None
        doc: dict[str, Any] = {
            "_id": str(ObjectId()),
            "lead_id": lead_id,
            "team_id": team_id or lead.get("team_id"),
            "owner_id": lead.get("owner_id"),
            "customer_id": customer,
            "source": source,
            "source_id": source_id,
            "ticket_id": source_id if source == "ticket" else None,
            "contract_id": source_id if source == "contract" else None,
            "handler_id": handler,
            "status": "pending",
            "csat": None,
            "nps": None,
            "comment": None,
            "offered_at": now,
            "answered_at": None,
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        try:
            await self._col.insert_one(doc)
        except DuplicateKeyError:
            return await self._col.find_one({"source": source, "source_id": source_id})
        body = "请为本次售后服务打分" if source == "ticket" else "请为我们的服务打分"
        await self._notifications.notify([notification(
            customer, "survey_request", "服务满意度调查", body, f"survey:{doc['_id']}:request",
            data={"survey_id": doc["_id"], "source": source},
        )], now)
        return doc

    async def ticket_handler(self, ticket_id: str) -> str | None:
        """The ticket's assignee (its handler), read from the ticket."""
        ticket = await self._tickets.find_one({"_id": {"$in": _id_candidates(ticket_id)}}, {"assignee_id": 1})
        handler = (ticket or {}).get("assignee_id")
        return str(handler) if handler else None

    async def offered_for(self, source: str, source_ids: list[str]) -> set[str]:
        """Which of these sources already have their survey (the contract job skips them)."""
        if not source_ids:
            return set()
        docs = await self._col.find({"source": source, "source_id": {"$in": source_ids}}, {"source_id": 1}).to_list(None)
        return {d["source_id"] for d in docs}

    # ------------------------------------------------------------ reading
    @staticmethod
    def scope(actor: Actor) -> dict:
        """Customers: their own surveys. Staff: like leads (rep: owner, manager: team, admin: all)."""
        if actor.role == "customer":
            return {"customer_id": actor.id}
        return scope_filter(actor, "owner_id")

    async def get(self, actor: Actor, survey_id: str) -> dict:
        doc = await self._col.find_one({"_id": str(survey_id)[:64], **self.scope(actor)})
        if doc is None:
            raise NotFound("survey.not_found")
        return doc

    async def list(self, actor: Actor, query: SurveyQuery) -> Page:
        filter_: dict[str, Any] = dict(self.scope(actor))
        if query.status:
            filter_["status"] = query.status
        if query.lead_id and actor.role != "customer":
            filter_["lead_id"] = query.lead_id
        return await paginate(self._col, filter_, limit=query.limit, cursor=query.cursor)

    # ------------------------------------------------------------ answering
    async def answer(self, actor: Actor, survey_id: str, data: SurveyAnswer) -> dict:
        """The customer's one answer. A second (or a racing one that lost) → 409, nothing written."""
        survey = await self._col.find_one({"_id": str(survey_id)[:64], "customer_id": actor.id})
        if survey is None:
            raise NotFound("survey.not_found")
        if survey["status"] != "pending":
            raise Conflict("survey.answered")
        now = self._clock.now()
        lead = await self._leads_view.find_one({"_id": survey["lead_id"]}, {"owner_id": 1, "team_id": 1})
        handler = survey.get("handler_id")
        if survey["source"] == "ticket" and handler is None:
            handler = await self.ticket_handler(survey["source_id"])
        answered = {
            **survey,
            "status": "answered", "csat": data.csat, "nps": data.nps, "comment": data.comment,
            "handler_id": handler, "owner_id": (lead or {}).get("owner_id", survey.get("owner_id")),
            "answered_at": now, "updated_at": now, "version": survey["version"] + 1,
        }
        result = await self._col.replace_one({"_id": survey["_id"], "version": survey["version"], "status": "pending"}, answered)
        if result.matched_count != 1:
            raise Conflict("survey.answered")  # the other answer won
        await self._leads.add_event(survey["lead_id"], "survey_answered", actor, {
            "survey_id": survey["_id"], "source": survey["source"], "source_id": survey["source_id"],
            "csat": data.csat, "nps": data.nps, "ticket_id": survey.get("ticket_id"), "handler_id": handler,
        }, at=now)
        signal = survey_signal(data.csat, data.nps)
        if signal and self._churn is not None:
            await self._churn.flag(survey["lead_id"], signal, {
                "survey_id": survey["_id"], "source": survey["source"], "source_id": survey["source_id"],
                "csat": data.csat, "nps": data.nps, "ticket_id": survey.get("ticket_id"),
            }, now)
        elif is_positive(data.csat, data.nps):
            await self._leads.note_activity(survey["lead_id"], now)
        return answered

    # ------------------------------------------------------------ output
    @staticmethod
    def out(doc: dict) -> dict:
        return {**doc, "id": doc["_id"]}

    @staticmethod
    def customer_out(doc: dict) -> dict:
        keep = ("source", "source_id", "status", "csat", "nps", "comment", "offered_at", "answered_at", "version")
        return {"id": doc["_id"], **{k: doc.get(k) for k in keep}}


__all__ = ["LOW_CSAT", "LOW_NPS", "PROMOTER_NPS", "SurveyService", "is_positive", "survey_signal"]
