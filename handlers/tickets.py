"""After-sale service tickets (工单): customers open and follow them, staff answer, assign, resolve."""

from __future__ import annotations

from handlers.base import ALL_ROLES, ApiHandler, operation
from server.actor import STAFF_ROLES
from server.schemas.tickets import (
    CATEGORIES, CategoriesOut, ReplyCreate, ReplyOut, TicketAction, TicketAssign, TicketCreate, TicketDetailOut, TicketOut, TicketPage,
    TicketQuery, TicketReopen,
)
from server.services.idempotency import load_existing

MANAGERS = ("manager", "admin")
TAGS = ("tickets",)


class TicketCategoriesHandler(ApiHandler):
    @operation("The ticket categories: code and labels (zh-CN, en)", roles=ALL_ROLES, auth="token", response=CategoriesOut, tags=TAGS)
    async def get(self) -> None:
        self.write_model(CategoriesOut, {"items": [{"code": c["code"], "label": c["zh-CN"], "label_en": c["en"]} for c in CATEGORIES]})


class TicketListHandler(ApiHandler):
    @operation(
        "Tickets in your scope, newest first (customers: their own; ?status=&priority=&category=&assignee_id=&breached=&lead_id=)",
        roles=ALL_ROLES, query=TicketQuery, response=TicketPage, tags=TAGS,
    )
    async def get(self) -> None:
        tickets = self.ctx.tickets
        page = await tickets.list(self.actor, self.parse_query(TicketQuery))
        self.write_page(TicketPage, page, lambda d: tickets.out(self.actor, d))

    @operation(
        "Open a ticket (customers: for themselves; staff: for a lead in scope, lead_id required); dispatched by rule at once; Idempotency-Key accepted",
        roles=ALL_ROLES, body=TicketCreate, response=TicketOut, status=201, idempotent=True, tags=TAGS,
        extra_responses={409: "A customer with no lead of their own (ticket.no_lead), or the key is still running"},
    )
    async def post(self) -> None:
        body = self.parse_body(TicketCreate)
        tickets = self.ctx.tickets
        doc = await self.idempotent(
            lambda ticket_id: tickets.create(self.actor, body, ticket_id),
            load_existing(tickets.exists, lambda ticket_id: tickets.get(self.actor, ticket_id)),
        )
        self.write_model(TicketOut, tickets.out(self.actor, doc), 201)


class TicketHandler(ApiHandler):
    @operation("A ticket with its conversation, oldest reply first (customers never see internal replies)", roles=ALL_ROLES, response=TicketDetailOut, tags=TAGS)
    async def get(self, ticket_id: str) -> None:
        tickets = self.ctx.tickets
        ticket, replies = await tickets.with_replies(self.actor, ticket_id)
        self.write_model(TicketDetailOut, {**tickets.out(self.actor, ticket), "replies": [tickets.reply_out(self.actor, r) for r in replies]})


class TicketReplyHandler(ApiHandler):
    @operation(
        "Reply on a ticket (staff may mark it internal); the first staff reply is the first response",
        roles=ALL_ROLES, body=ReplyCreate, response=ReplyOut, status=201, tags=TAGS,
        extra_responses={409: "The ticket is closed, or has the most replies a ticket takes"},
    )
    async def post(self, ticket_id: str) -> None:
        body = self.parse_body(ReplyCreate)
        tickets = self.ctx.tickets
        self.write_model(ReplyOut, tickets.reply_out(self.actor, await tickets.reply(self.actor, ticket_id, body)), 201)


class TicketAssignHandler(ApiHandler):
    @operation(
        "Assign a ticket to a rep or manager of its team, or (no assignee_id) dispatch it by rule again (managers, admins)",
        roles=MANAGERS, body=TicketAssign, response=TicketOut, versioned=True, tags=TAGS,
        extra_responses={409: "Resolved or closed, or nobody to dispatch to", 412: "Stale version"},
    )
    async def post(self, ticket_id: str) -> None:
        body = self.parse_body(TicketAssign)
        tickets = self.ctx.tickets
        doc = await tickets.assign(self.actor, ticket_id, self.expected_version(body.version), body.assignee_id)
        self.write_model(TicketOut, tickets.out(self.actor, doc))


def _action(name: str, summary: str, roles: tuple[str, ...], conflict: str) -> type[ApiHandler]:
    class ActionHandler(ApiHandler):
        @operation(summary, roles=roles, body=TicketAction, response=TicketOut, versioned=True, tags=TAGS, extra_responses={409: conflict, 412: "Stale version"})
        async def post(self, ticket_id: str) -> None:
            body = self.parse_body(TicketAction)
            tickets = self.ctx.tickets
            version = self.expected_version(body.version)
            if name == "resolve":
                doc = await tickets.resolve(self.actor, ticket_id, version, body.note)
            elif name == "start":
                doc = await tickets.start(self.actor, ticket_id, version)
            else:
                doc = await tickets.close(self.actor, ticket_id, version)
            self.write_model(TicketOut, tickets.out(self.actor, doc))

    ActionHandler.__name__ = ActionHandler.__qualname__ = f"Ticket{name.capitalize()}Handler"
    return ActionHandler


TicketStartHandler = _action("start", "Start work on an open or assigned ticket (in_progress)", STAFF_ROLES, "Not open or assigned")
TicketResolveHandler = _action("resolve", "Resolve a ticket, with an optional note (staff)", STAFF_ROLES, "Already resolved or closed")
TicketCloseHandler = _action("close", "Close a ticket (the customer confirming or withdrawing, or staff); final", ALL_ROLES, "Already closed")


class TicketReopenHandler(ApiHandler):
    @operation(
        "Reopen a resolved ticket within the team's service.reopen_days of its resolution (back to in_progress)",
        roles=ALL_ROLES, body=TicketReopen, response=TicketOut, versioned=True, tags=TAGS,
        extra_responses={409: "Not resolved (ticket.invalid_transition, ticket.closed) or the window has passed (ticket.reopen_window_passed)", 412: "Stale version"},
    )
    async def post(self, ticket_id: str) -> None:
        body = self.parse_body(TicketReopen)
        tickets = self.ctx.tickets
        doc = await tickets.reopen(self.actor, ticket_id, self.expected_version(body.version), body.reason)
        self.write_model(TicketOut, tickets.out(self.actor, doc))


routes = [
    (r"/api/v1/tickets", TicketListHandler),
    (r"/api/v1/tickets/categories", TicketCategoriesHandler),
    (r"/api/v1/tickets/(?P<ticket_id>[^/]+)", TicketHandler),
    (r"/api/v1/tickets/(?P<ticket_id>[^/]+)/replies", TicketReplyHandler),
    (r"/api/v1/tickets/(?P<ticket_id>[^/]+)/assign", TicketAssignHandler),
    (r"/api/v1/tickets/(?P<ticket_id>[^/]+)/start", TicketStartHandler),
    (r"/api/v1/tickets/(?P<ticket_id>[^/]+)/resolve", TicketResolveHandler),
    (r"/api/v1/tickets/(?P<ticket_id>[^/]+)/reopen", TicketReopenHandler),
    (r"/api/v1/tickets/(?P<ticket_id>[^/]+)/close", TicketCloseHandler),
]
