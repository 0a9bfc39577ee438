"""Leads as staff see them, scoped: a rep their own, a manager their team's, an admin all."""

from __future__ import annotations

from handlers.base import ApiHandler, operation
from server.errors import Forbidden
from server.schemas.common import PageQuery
from server.schemas.leads import (
    AssignIn, EventPage, FollowupCreate, FollowupOut, LeadCreate, LeadDetailOut, LeadListQuery, LeadOut,
    LeadPage, LeadUpdate, PoolQuery, ReleaseIn, RevealIn, RevealOut, StageChange,
)
from server.services.idempotency import load_existing
from server.services.users import public_id

MANAGERS = ("manager", "admin")
FIELD_STAFF = ("rep", "manager")


class LeadListHandler(ApiHandler):
    @operation("List leads in your scope, newest activity first or by next follow-up", query=LeadListQuery, response=LeadPage, tags=("leads",))
    async def get(self) -> None:
        page = await self.ctx.leads.list(self.actor, self.parse_query(LeadListQuery))
        self.write_page(LeadPage, page, self.ctx.leads.out)

    @operation(
        "Capture a lead (you own it); Idempotency-Key and your own id accepted",
        roles=FIELD_STAFF + ("admin",), body=LeadCreate, response=LeadDetailOut, status=201, idempotent=True, tags=("leads",),
        extra_responses={409: "A lead with this phone exists, or the key is still running"},
    )
    async def post(self) -> None:
        body = self.parse_body(LeadCreate)
        leads = self.ctx.leads

        async def create(lead_id: str | None) -> dict:
            return (await leads.create(self.actor, body, lead_id))[0]

        doc = await self.idempotent(create, load_existing(leads.exists, lambda lead_id: leads.get(self.actor, lead_id)), resource_id=body.id)
        self.write_model(LeadDetailOut, leads.out(doc), 201)


class LeadHandler(ApiHandler):
    @operation("A lead in full (phone masked)", response=LeadDetailOut, tags=("leads",))
    async def get(self, lead_id: str) -> None:
        doc = await self.ctx.leads.get(self.actor, lead_id)
        self.write_model(LeadDetailOut, self.ctx.leads.out(doc))

    @operation("Edit a lead's details (send version or If-Match; 412 when stale)", body=LeadUpdate, response=LeadDetailOut, versioned=True, tags=("leads",))
    async def patch(self, lead_id: str) -> None:
        body = self.parse_body(LeadUpdate)
        doc = await self.ctx.leads.update(self.actor, lead_id, body, self.expected_version(body.version))
        self.write_model(LeadDetailOut, self.ctx.leads.out(doc))


class StageHandler(ApiHandler):
    @operation(
        "Move a lead along its lifecycle (409 lists the allowed moves)", body=StageChange, response=LeadDetailOut, tags=("leads",),
        extra_responses={409: "That move is not allowed from the lead's stage (details list the allowed ones)"},
    )
    async def post(self, lead_id: str) -> None:
        doc = await self.ctx.leads.change_stage(self.actor, lead_id, self.parse_body(StageChange))
        self.write_model(LeadDetailOut, self.ctx.leads.out(doc))


class RevealHandler(ApiHandler):
    async def _authenticate(self, spec) -> None:
        try:
            await super()._authenticate(spec)
        except Forbidden:
            # A signed-in non-staff caller (a customer) asking for a phone: refused, and on the record.
            await self.ctx.audit.record(self.actor, "lead.reveal", target_type="lead", target_id=str(self.path_kwargs.get("lead_id", ""))[:64], outcome="refused", details={"reason": "role"})
            raise

    @operation("Reveal a lead's full phone number (audited)", body=RevealIn, response=RevealOut, tags=("leads",),
               extra_responses={409: "The lead has no phone number (lead.no_phone)", 429: "Too many reveals by this user (see Retry-After)"})
    async def post(self, lead_id: str) -> None:
        body = self.parse_body(RevealIn)
        value = await self.ctx.leads.reveal(self.actor, lead_id, body.field)
        self.write_model(RevealOut, {"field": body.field, "value": value})


class FollowupListHandler(ApiHandler):
    @operation("Log a call, visit (with check-in), WeChat chat, meeting or note", body=FollowupCreate, response=FollowupOut, status=201, tags=("leads",))
    async def post(self, lead_id: str) -> None:
        doc, _ = await self.ctx.followups.add(self.actor, lead_id, self.parse_body(FollowupCreate))
        self.write_json(FollowupOut.from_event(doc).model_dump(mode="json"), 201)


class TimelineHandler(ApiHandler):
    @operation("The lead's timeline, newest first", query=PageQuery, response=EventPage, tags=("leads",))
    async def get(self, lead_id: str) -> None:
        query = self.parse_query(PageQuery)
        page = await self.ctx.leads.timeline(self.actor, lead_id, query.limit, query.cursor)
        self.write_page(EventPage, page, public_id)


class PoolHandler(ApiHandler):
    @operation("Leads in your team's public pool", query=PoolQuery, response=LeadPage, tags=("pool",))
    async def get(self) -> None:
        query = self.parse_query(PoolQuery)
        page = await self.ctx.pool.list(self.actor, query.limit, query.cursor, query.tag)
        self.write_page(LeadPage, page, self.ctx.leads.out)


class ClaimHandler(ApiHandler):
    @operation(
        "Claim a lead from the pool (409 if someone was faster)", roles=FIELD_STAFF, response=LeadOut, auth="token", tags=("pool",),
        extra_responses={409: "Someone was faster, you are at capacity or your daily limit, or you released it too recently"},
    )
    async def post(self, lead_id: str) -> None:
        doc = await self.ctx.pool.claim(self.actor, lead_id)
        self.write_model(LeadOut, self.ctx.leads.out(doc))


class ReleaseHandler(ApiHandler):
    @operation(
        "Put a lead back in the pool, with a reason", body=ReleaseIn, response=LeadOut, tags=("pool",),
        extra_responses={409: "The lead is not owned (already in the pool), or it changed meanwhile"},
    )
    async def post(self, lead_id: str) -> None:
        body = self.parse_body(ReleaseIn)
        doc = await self.ctx.pool.release(self.actor, lead_id, body.reason)
        self.write_model(LeadOut, self.ctx.leads.out(doc))


class AssignHandler(ApiHandler):
    @operation(
        "Give a lead to a member of its team (managers and admins)", roles=MANAGERS, body=AssignIn, response=LeadOut, tags=("pool",),
        extra_responses={409: "The lead changed meanwhile; read it again"},
    )
    async def post(self, lead_id: str) -> None:
        body = self.parse_body(AssignIn)
        doc = await self.ctx.pool.assign(self.actor, lead_id, body.owner_id, body.reason)
        self.write_model(LeadOut, self.ctx.leads.out(doc))


routes = [
    (r"/api/v1/leads", LeadListHandler),
    (r"/api/v1/pool", PoolHandler),
    (r"/api/v1/leads/(?P<lead_id>[^/]+)", LeadHandler),
    (r"/api/v1/leads/(?P<lead_id>[^/]+)/stage", StageHandler),
    (r"/api/v1/leads/(?P<lead_id>[^/]+)/reveal", RevealHandler),
    (r"/api/v1/leads/(?P<lead_id>[^/]+)/followups", FollowupListHandler),
    (r"/api/v1/leads/(?P<lead_id>[^/]+)/timeline", TimelineHandler),
    (r"/api/v1/leads/(?P<lead_id>[^/]+)/claim", ClaimHandler),
    (r"/api/v1/leads/(?P<lead_id>[^/]+)/release", ReleaseHandler),
    (r"/api/v1/leads/(?P<lead_id>[^/]+)/assign", AssignHandler),
]
