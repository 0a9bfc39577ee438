"""The team's public pool (公海): claim, release and manual assignment.

A claim first reserves a slot on the rep's own user document (capacity and today's claim count,
checked in the filter of one atomic update), then takes the lead with a conditional update that
only matches while it is still in the pool and not in the rep's cool-down. Of two reps claiming at
once, exactly one update matches; the other gets 409 and its reservation is given back.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, NoReturn

from server.actor import Actor
from server.clock import Clock
from server.errors import Conflict, Forbidden, Invalid, NotFound, detail
from server.paging import Page, paginate
from server.services.leads import LIST_PROJECTION, LeadService
from server.services.users import UserService


class PoolService:
    def __init__(self, *, leads_view, clock: Clock, leads: LeadService, users: UserService, tz) -> None:
        self._leads_col = leads_view  # read-only: the pool list and the explanation of a refused claim
        self._clock = clock
        self._leads = leads
        self._users = users
        self._tz = tz

    async def list(self, actor: Actor, limit: int, cursor: str | None, tag: str | None) -> Page:
        filter_: dict[str, Any] = {"team_id": actor.team_id or "-", "pool": True}
        if actor.is_admin:
            filter_.pop("team_id")
        if tag:
            filter_["tags"] = tag
        return await paginate(self._leads_col, filter_, limit=limit, cursor=cursor, sort_key="updated_ms", projection=LIST_PROJECTION)

    async def claim(self, actor: Actor, lead_id: str) -> dict:
        """Three commands: reserve on the rep (also re-checks the token's user), take the lead, log it."""
        rules = await self._users.team_pool_settings(actor.team_id)
        now = self._clock.now()
        today = now.astimezone(self._tz).date().isoformat()
        rep = await self._users.reserve_claim(actor, today, rules["claim_daily_limit"])
        lead = await self._leads.claim_from_pool(actor, lead_id, rep.get("name") or actor.id, now)
        if lead is None:
            await self._users.give_back_claim(rep["_id"], today)
            await self._why_not_claimed(actor, lead_id, now, rules)
        return lead

    async def _why_not_claimed(self, actor: Actor, lead_id: str, now, rules: dict) -> NoReturn:
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
        updated = await self._leads.release_to_pool(lead, actor, reason, rules["release_cooldown_days"], self._clock.now())
        if updated is None:
            raise Conflict("pool.claim_lost")
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
            raise Invalid("pool.bad_assignee", details=[detail("owner_id", "not_in_team", text="assignee_not_in_team")])
        text = reason or {"zh-CN": f"由 {actor.name or actor.id} 分配", "en": f"assigned by {actor.name or actor.id}"}
        updated = await self._leads.hand_over(lead, actor, owner_id, text, self._clock.now())
        if updated is None:
            raise Conflict("lead.version_mismatch")
        return updated
