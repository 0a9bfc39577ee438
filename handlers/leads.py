"""Leads as staff see them, scoped: a rep their own, a manager their team's, an admin all."""

from __future__ import annotations

from handlers.base import ApiHandler, operation
from server.schemas.leads import LeadDetailOut, RevealIn, RevealOut


class LeadHandler(ApiHandler):
    @operation("A lead in full (phone masked)", response=LeadDetailOut, tags=("leads",))
    async def get(self, lead_id: str) -> None:
        doc = await self.ctx.leads.get(self.actor, lead_id)
        self.write_model(LeadDetailOut, self.ctx.leads.out(doc))


class RevealHandler(ApiHandler):
    @operation("Reveal a lead's full phone number (audited)", body=RevealIn, response=RevealOut, tags=("leads",))
    async def post(self, lead_id: str) -> None:
        body = self.parse_body(RevealIn)
        value = await self.ctx.leads.reveal(self.actor, lead_id, body.field)
        self.write_model(RevealOut, {"field": body.field, "value": value})


routes = [
    (r"/api/v1/leads/(?P<lead_id>[^/]+)", LeadHandler),
    (r"/api/v1/leads/(?P<lead_id>[^/]+)/reveal", RevealHandler),
]
