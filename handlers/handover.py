"""Hand-over (交接) of a leaving user's work: preview, run, progress. Admins; managers for their team."""

from __future__ import annotations

from handlers.base import ApiHandler, operation
from server.schemas.handover import HandoverIn, HandoverOut, HandoverPreviewOut

MANAGERS = ("admin", "manager")


def handover_out(doc: dict) -> dict:
    return {**doc, "id": str(doc["_id"])}


class HandoverPreviewHandler(ApiHandler):
    @operation("What a hand-over of this user would move: counts per kind, the target, what is skipped and why", roles=MANAGERS,
               body=HandoverIn, response=HandoverPreviewOut, tags=("admin",))
    async def post(self, user_id: str) -> None:
        self.write_model(HandoverPreviewOut, await self.ctx.handover.preview(self.actor, user_id, self.parse_body(HandoverIn)))


class HandoverStartHandler(ApiHandler):
    @operation("Hand this user's work over (runs in the background; poll GET /handovers/{id}); Idempotency-Key accepted", roles=MANAGERS,
               body=HandoverIn, response=HandoverOut, status=202, idempotent=True, tags=("admin",),
               extra_responses={409: "A hand-over of this user is already running"})
    async def post(self, user_id: str) -> None:
        body = self.parse_body(HandoverIn)
        service = self.ctx.handover
        # A console retrying after a lost response gets the hand-over it started, not a 409.
        doc = await self.idempotent(
            lambda handover_id: service.start(self.actor, user_id, body, handover_id=handover_id),
            lambda handover_id: service.find(self.actor, handover_id),
        )
        self.set_header("Location", f"/api/v1/handovers/{doc['_id']}")
        self.write_model(HandoverOut, handover_out(doc), 202)


class HandoverHandler(ApiHandler):
    @operation("A hand-over and its progress", roles=MANAGERS, response=HandoverOut, tags=("admin",))
    async def get(self, handover_id: str) -> None:
        self.write_model(HandoverOut, handover_out(await self.ctx.handover.get(self.actor, handover_id)))


routes = [
    (r"/api/v1/users/(?P<user_id>[^/]+)/handover/preview", HandoverPreviewHandler),
    (r"/api/v1/users/(?P<user_id>[^/]+)/handover", HandoverStartHandler),
    (r"/api/v1/handovers/(?P<handover_id>[^/]+)", HandoverHandler),
]
