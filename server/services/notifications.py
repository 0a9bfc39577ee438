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
from server.ids import maybe_oid, parse_oid
from server.paging import Page, paginate

DUPLICATE_KEY = 11000


def notification(
    user_id: str, kind: str, title: str, body: str, dedupe_key: str, *,
    data: dict[str, Any] | None = None, urgent: bool = False,
) -> dict[str, Any]:
    """One notification for ``notify``; ``kind`` selects the WeChat template (MPCRM_WECHAT_TEMPLATES, docs/features.md)."""
    return {"user_id": user_id, "kind": kind, "title": title, "body": body, "dedupe_key": dedupe_key, "data": data or {}, "urgent": urgent}


STAFF = ("rep", "manager", "admin")


class NotificationService:
    def __init__(self, *, notifications, clock: Clock, users_view=None, leads_view=None, contracts_view=None) -> None:
        self._col = notifications
        self._clock = clock
        self._users = users_view  # read-only: who takes over a notification of an inactive user
        self._leads = leads_view
        self._contracts = contracts_view

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

    # ------------------------------------------------------------ recipients who left
    @staticmethod
    def needs_new_recipient(user: dict | None) -> bool:
        """A staff member who is no longer active (or no longer exists) gets nothing: what was
        addressed to them goes to someone who can act on it (``reroute``). Customers are never
        rerouted."""
        return user is not None and user.get("role") in STAFF and not user.get("active", True)

    async def recipients_instead_of(self, item: dict, user: dict) -> list[str]:
        """Who receives a notification addressed to ``user``, an inactive staff member: the current
        owner of the lead (or contract) it is about, when active; else the managers of that lead's
        team (or of the user's team); else the admins. The one place this is decided: every kind of
        notification (task reminders, renewal and payment reminders, churn and reclaim warnings,
        approvals) passes through it on its way out (the ``deliver_outbox`` job)."""
        data = item.get("data") or {}
        gone = str(user["_id"])
        owner: str | None = None
        team = user.get("team_id")
        if data.get("contract_id") and self._contracts is not None:
            contract = await self._contracts.find_one({"_id": str(data["contract_id"])[:64]}, {"owner_id": 1, "team_id": 1, "lead_id": 1})
            if contract is not None:
                owner, team = contract.get("owner_id"), contract.get("team_id") or team
        if owner is None and data.get("lead_id") and self._leads is not None:
            lead = await self._leads.find_one({"_id": str(data["lead_id"])[:64]}, {"owner_id": 1, "team_id": 1})
            if lead is not None:
                owner, team = lead.get("owner_id"), lead.get("team_id") or team
        if self._users is None:
            return []
        if owner and owner != gone and (oid := maybe_oid(owner)) is not None:
            found = await self._users.find_one({"_id": oid, "active": True, "role": {"$in": list(STAFF)}}, {"_id": 1})
            if found is not None:
                return [owner]
        if team:
            managers = await self._users.find({"team_id": team, "role": "manager", "active": True}, {"_id": 1}).to_list(None)
            ids = [str(m["_id"]) for m in managers if str(m["_id"]) != gone]
            if ids:
                return ids
        admins = await self._users.find({"role": "admin", "active": True}, {"_id": 1}).limit(20).to_list(None)
        return [str(a["_id"]) for a in admins if str(a["_id"]) != gone]

    async def reroute(self, item: dict, user: dict, now: datetime) -> list[str]:
        """The same notification for each of ``recipients_instead_of`` (dedupe key + ``>`` + the
        new recipient, so rerouting twice adds nothing), ``data.rerouted_from`` naming whom it was
        for. Returns the new recipients; the caller closes the original as ``rerouted``."""
        to = await self.recipients_instead_of(item, user)
        data = {**(item.get("data") or {}), "rerouted_from": str(user["_id"])}
        await self.notify([
            notification(uid, item["kind"], item.get("title", ""), item.get("body", ""), f"{item['dedupe_key']}>{uid}", data=data, urgent=bool(item.get("urgent")))
            for uid in to
        ], now)
        return to

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
