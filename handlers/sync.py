"""Offline sync for the mini-program: everything in your scope changed since your last cursor."""

from __future__ import annotations

from handlers.base import ApiHandler, operation
from server.schemas.leads import FollowupOut
from server.schemas.sync import SyncOut, SyncQuery
from server.schemas.tasks import TaskOut
from server.services.users import public_id


class SyncHandler(ApiHandler):
    @operation(
        "Changes in your scope since your cursor: leads, your follow-ups, your tasks, and leads that left your scope",
        query=SyncQuery, response=SyncOut, tags=("sync",),
    )
    async def get(self) -> None:
        query = self.parse_query(SyncQuery)
        page = await self.ctx.sync.page(self.actor, await self.current_user_doc(), query.since, query.limit)
        self.write_model(SyncOut, {
            "leads": [self.ctx.leads.out(d) for d in page.leads],
            "followups": [FollowupOut.from_event(d) for d in page.followups],
            "tasks": [TaskOut.model_validate(public_id(t)).model_dump(mode="json") for t in page.tasks],
            "deleted": page.deleted,
            "cursor": page.cursor,
            "has_more": page.has_more,
        })


routes = [
    (r"/api/v1/sync", SyncHandler),
]
