"""The team's public pool (公海): claim, release and manual assignment.

A claim first reserves a slot on the rep's own user document (capacity and today's claim count,
checked in the filter of one atomic update), then takes the lead with a conditional update that
only matches while it is still in the pool and not in the rep's cool-down. Of two reps claiming at
once, exactly one update matches; the other gets 409 and its reservation is given back.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument

from server.actor import Actor
from server.clock import Clock
from server.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from server.paging import Page, paginate
from server.services.leads import LIST_PROJECTION, LeadService
from server.services.lifecycle import OPEN_STAGES
from server.services.users import UserService


class PoolService:
    def __init__(self, db, clock: Clock, leads: LeadService, users: UserService, timezone) -> None:
        self._leads_col = db["leads"]
        self._users_col = db["users"]
        self._clock = clock
        self._leads = leads
        self._users = users
        self._tz = timezone

    async def list(self, actor: Actor, limit: int, cursor: str | None, tag: str | None) -> Page:
        filter_: dict[str, Any] = {"team_id": actor.team_id or "-", "pool": True}
        if actor.is_admin:
            filter_.pop("team_id")
        if tag:
            filter_["tags"] = tag
        return await paginate(self._leads_col, filter_, limit=limit, cursor=cursor, sort_key="updated_at", projection=LIST_PROJECTION)

    async def claim(self, actor: Actor, lead_id: str) -> dict:
        """Three commands: reserve on the rep (also re-checks the token's user), take the lead, log it."""
        rules = await self._users.team_pool_settings(actor.team_id)
        now = self._clock.now()
        today = now.astimezone(self._tz).date().isoformat()
        limit = rules["claim_daily_limit"]
        rep = await self._reserve(actor, today, limit)
        lead = await self._leads_col.find_one_and_update(
            {
                "_id": str(lead_id)[:64],
                "team_id": actor.team_id or "-",
                "pool": True,
                "owner_id": None,
                # Inside $and: beside a top-level $or, nx-27017 drops `_id` and would hand over
                # another pool lead whose cool-down is over (docs/mongodb-compat.md).
                "$and": [{"$or": [{f"cooldowns.{actor.id}": {"$exists": False}}, {f"cooldowns.{actor.id}": {"$lte": now}}]}],
            },
            {
                "$set": {
                    "owner_id": actor.id,
                    "pool": False,
                    "assignment": {"owner_id": actor.id, "rule_id": None, "strategy": "claim", "reason": {"zh-CN": f"{rep.get('name') or actor.id} 从公海领取", "en": f"{rep.get('name') or actor.id} claimed it from the pool"}, "at": now},
                },
                "$currentDate": {"updated_at": True, "touched_at": True},
                "$inc": {"version": 1},
            },
            return_document=ReturnDocument.AFTER,
        )
        if lead is None:
            await self._users_col.update_one({"_id": rep["_id"]}, {"$inc": {"open_leads": -1, f"claims.{today}": -1}})
            await self._why_not_claimed(actor, lead_id, now, rules)
        if lead["stage"] not in OPEN_STAGES:
            await self._leads.adjust_open_leads(actor.id, -1)  # reserved as open, but it is a customer
        await self._leads.add_event(lead["_id"], "claimed", actor, {"owner_id": actor.id}, at=now)
        return lead

    async def _reserve(self, actor: Actor, today: str, limit: int) -> dict:
        """One atomic update on the rep: still active with this token, under capacity, under today's
        claim limit. Returns the rep; explains a refusal with a second read."""
        rep = await self._users_col.find_one_and_update(
            {
                "_id": ObjectId(actor.id),
                "active": True,
                "token_version": actor.token_version,
                # Inside one $and: nx-27017 drops the other conditions (even _id) of a filter that
                # has both $expr and $or at the top level, and would bill another rep's counters.
                "$and": [
                    {"$expr": {"$lt": ["$open_leads", "$capacity"]}},
                    {"$or": [{f"claims.{today}": {"$exists": False}}, {f"claims.{today}": {"$lt": limit}}]},
                ],
            },
            {"$inc": {"open_leads": 1, f"claims.{today}": 1}},
            projection={"name": 1},
            return_document=ReturnDocument.AFTER,
        )
        if rep is not None:
            return rep
        fresh = await self._users_col.find_one({"_id": ObjectId(actor.id)}, {"active": 1, "token_version": 1, "open_leads": 1, "capacity": 1})
        if fresh is None or not fresh.get("active") or fresh.get("token_version") != actor.token_version:
            raise Unauthorized("auth.invalid_token")
        if fresh.get("open_leads", 0) >= fresh.get("capacity", 0):
            raise Conflict("pool.at_capacity", params={"capacity": fresh.get("capacity", 0)})
        raise Conflict("pool.daily_limit", params={"limit": limit})

    async def _why_not_claimed(self, actor: Actor, lead_id: str, now, rules: dict) -> None:
        """A lead someone claimed in the last minute was lost in a race (409); any other lead that is
        not in the caller's pool is simply not theirs to see (404)."""
        lead = await self._leads_col.find_one({"_id": str(lead_id)[:64], "team_id": actor.team_id or "-"}, {"pool": 1, "cooldowns": 1, "assignment": 1})
        if lead is None:
            raise NotFound("lead.not_found")
        until = (lead.get("cooldowns") or {}).get(actor.id)
        if lead.get("pool") and until and until > now:
            raise Conflict("pool.cooldown", params={"days": rules["release_cooldown_days"]})
        assignment = lead.get("assignment") or {}
        if assignment.get("strategy") == "claim" and assignment["at"] > now - timedelta(minutes=1):
            raise Conflict("pool.claim_lost")
        raise NotFound("lead.not_found")

    async def release(self, actor: Actor, lead_id: str, reason: str) -> dict:
        lead = await self._leads.get(actor, lead_id, {"owner_id": 1, "stage": 1, "team_id": 1, "cooldowns": 1})
        if lead.get("owner_id") is None:
            raise Conflict("pool.not_owner")
        if actor.role == "rep" and lead["owner_id"] != actor.id:
            raise Forbidden("pool.not_owner")
        rules = await self._users.team_pool_settings(lead.get("team_id"))
        now = self._clock.now()
        previous = lead["owner_id"]
        updated = await self._leads_col.find_one_and_update(
            {"_id": lead["_id"], "owner_id": previous},
            {
                "$set": {
                    "owner_id": None,
                    "pool": True,
                    "assignment": None,
                    "release": {"by": actor.id, "previous_owner_id": previous, "reason": reason, "at": now},
                    # The whole map is written: datetimes go inside documents, never bare (compat doc).
                    "cooldowns": {**(lead.get("cooldowns") or {}), previous: now + timedelta(days=rules["release_cooldown_days"])},
                },
                "$currentDate": {"updated_at": True},
                "$inc": {"version": 1},
            },
            return_document=ReturnDocument.AFTER,
        )
        if updated is None:
            raise Conflict("pool.claim_lost")
        if lead["stage"] in OPEN_STAGES:
            await self._leads.adjust_open_leads(previous, -1)
        await self._leads.record_scope_exit(previous, lead["_id"], now)
        await self._leads.owner_changed(updated)
        await self._leads.add_event(lead["_id"], "released", actor, {"previous_owner_id": previous, "reason": reason}, at=now)
        return updated

    async def assign(self, actor: Actor, lead_id: str, owner_id: str, reason: str | None) -> dict:
        """A manager (own team) or admin gives a lead to someone; the reason goes on the timeline."""
        lead = await self._leads.get(actor, lead_id, {"owner_id": 1, "stage": 1, "team_id": 1})
        owner = await self._users.by_id(owner_id)
        if (
            owner is None
            or not owner.get("active")
            or owner.get("role") not in ("rep", "manager")
            or owner.get("team_id") != lead.get("team_id")
        ):
            raise Invalid("pool.bad_assignee", details=[{"field": "owner_id", "code": "not_in_team", "message": "not an active member of the lead's team"}])
        now = self._clock.now()
        previous = lead.get("owner_id")
        text = reason or {"zh-CN": f"由 {actor.name or actor.id} 分配", "en": f"assigned by {actor.name or actor.id}"}
        updated = await self._leads_col.find_one_and_update(
            {"_id": lead["_id"], "owner_id": previous},
            {
                "$set": {
                    "owner_id": owner_id,
                    "pool": False,
                    "assignment": {"owner_id": owner_id, "rule_id": None, "strategy": "manual", "reason": text, "at": now},
                    "awaiting_allocation": False,
                },
                "$currentDate": {"updated_at": True, "touched_at": True},
                "$inc": {"version": 1},
            },
            return_document=ReturnDocument.AFTER,
        )
        if updated is None:
            raise Conflict("lead.version_mismatch")
        if lead["stage"] in OPEN_STAGES:
            if previous:
                await self._leads.adjust_open_leads(previous, -1)
            await self._leads.adjust_open_leads(owner_id, +1)
        if previous and previous != owner_id:
            await self._leads.record_scope_exit(previous, lead["_id"], now)
        await self._leads.owner_changed(updated)
        await self._leads.add_event(lead["_id"], "assigned", actor, {"owner_id": owner_id, "previous_owner_id": previous, "strategy": "manual", "reason": text}, at=now)
        return updated
