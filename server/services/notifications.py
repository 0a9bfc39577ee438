"""Notifications: the in-app inbox and the outbox of WeChat subscribe messages, in one collection.

Every notification has a unique ``dedupe_key`` (for example ``task:<id>:due`` or
``renewal:<contract>:30``), so a job that runs twice, or on two instances, notifies once.
Delivery to WeChat is the job ``deliver_outbox``; creating a notification never waits for it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo.errors import BulkWriteError

from server.actor import Actor
from server.clock import Clock
from server.errors import NotFound
from server.ids import parse_oid
from server.paging import Page, paginate

DUPLICATE_KEY = 11000


def notification(
    user_id: str, kind: str, title: str, body: str, dedupe_key: str, *,
    data: dict[str, Any] | None = None, urgent: bool = False,
) -> dict[str, Any]:
    """One notification for ``notify``; ``kind`` selects the WeChat template (MPCRM_WECHAT_TEMPLATES, docs/features.md)."""
    return {"user_id": user_id, "kind": kind, "title": title, "body": body, "dedupe_key": dedupe_key, "data": data or {}, "urgent": urgent}


class NotificationService:
    def __init__(self, *, notifications, clock: Clock) -> None:
        self._col = notifications
        self._clock = clock

    async def notify(self, items: list[dict[str, Any]], now: datetime | None = None) -> int:
        """Insert what is new; an existing ``dedupe_key`` is silently skipped. Returns how many were new."""
        if not items:
            return 0
        now = now or self._clock.now()
        docs = [
            {
                "_id": ObjectId(),
                **item,
                "created_at": now,
                "read_at": None,
                "delivery": {"state": "pending", "attempts": 0, "next_attempt_at": now},
            }
            for item in items
        ]
        try:
            result = await self._col.insert_many(docs, ordered=False)
            return len(result.inserted_ids)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            return exc.details.get("nInserted", len(docs) - len(errors))

    async def claim_delivery(self, filter_: dict, claimed: dict) -> bool:
        """The outbox takes a notification to send (``filter_`` names the delivery state it saw);
        of two workers one wins. ``claimed`` is the whole ``delivery`` sub-document, token included."""
        result = await self._col.update_one(filter_, {"$set": {"delivery": claimed}})
        return result.modified_count == 1

    async def finish_delivery(self, notification_id, token: str, delivery: dict) -> None:
        """The outcome of a delivery, written only by the worker still holding the claim."""
        await self._col.update_one({"_id": notification_id, "delivery.claim": token}, {"$set": {"delivery": delivery}})

    async def list(self, actor: Actor, unread: bool | None, limit: int, cursor: str | None) -> Page:
        filter_: dict[str, Any] = {"user_id": actor.id}
        if unread is True:
            filter_["read_at"] = None
        return await paginate(self._col, filter_, limit=limit, cursor=cursor)

    async def mark_read(self, actor: Actor, notification_id: str) -> dict:
        oid = parse_oid(notification_id, "notification.not_found")
        await self._col.update_one({"_id": oid, "user_id": actor.id, "read_at": None}, {"$currentDate": {"read_at": True}})
        doc = await self._col.find_one({"_id": oid, "user_id": actor.id})
        if doc is None:
            raise NotFound("notification.not_found")
        return doc
