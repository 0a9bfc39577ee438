"""Users and teams. Admins write; a manager reads their own team; reps and customers neither."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from collections.abc import Awaitable, Callable, Iterable

from bson import ObjectId
from pymongo import ReturnDocument, UpdateMany, UpdateOne
from pydantic import ValidationError
from pymongo.errors import DuplicateKeyError

from server.actor import STAFF_ROLES, Actor, require_role
from server.clock import Clock
from server.errors import Conflict, Invalid, NotFound, Unauthorized, VersionMismatch, detail, validation_details
from server.ids import maybe_oid, parse_oid
from server.paging import Page, paginate
from config.settings import Settings
from server.schemas.team_settings import (
    TeamSettings, TeamSettingsBook, apply_settings_patch, effective_team_settings, stored_groups,
)
from server.schemas.users import PoolSettings, TeamCreate, TeamUpdate, UserCreate, UserListQuery, UserUpdate
from server.security import Passwords, token_hash
from server.services.audit import AuditService
from server.services.keys import resealed
from server.services.recent_users import RecentUsers
from server.services.sessions import SessionStore

# Changing one of these logs the user out everywhere at once.
_SESSION_FIELDS = {"role", "active", "password", "team_id"}
_POOL_CACHE_S = 30.0
_BIND_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: typed on a phone


SCOPE_EXITS_KEPT = 500


def scope_exit_update(lead_ids: list[str], at: datetime) -> dict:
    """The update that appends ``"<epoch ms>:<lead id>"`` entries to a user's recent scope exits
    (plain strings: nx-27017 mangles pushed sub-documents), keeping the last ``SCOPE_EXITS_KEPT``."""
    stamp = int(at.timestamp() * 1000)
    return {"$push": {"scope_exits": {"$each": [f"{stamp}:{lead_id}" for lead_id in lead_ids], "$slice": -SCOPE_EXITS_KEPT}}}


def owner_moves(tallies: dict[str, OwnerTally]) -> dict[str, str | None]:
    """Who owns each lead that changed hands in one report: the user it entered, or None (the pool)
    for a lead that left someone's scope and entered nobody's."""
    moves: dict[str, str | None] = {}
    for tally in tallies.values():
        for lead_id in tally.scope_exits:
            moves.setdefault(lead_id, None)
    for user_id, tally in tallies.items():
        for lead_id in tally.scope_entries:
            moves[lead_id] = user_id
    return moves


@dataclass
class OwnerTally:
    """What happened to one user's leads, written as one update of their document: the change of
    their ``open_leads`` counter, leads allocated to them on a business day, leads that left their
    scope (offline sync drops those) and leads that entered it (for the owner-change listeners)."""

    open_leads: int = 0
    assigned: int = 0
    assigned_on: str | None = None
    scope_exits: list[str] = field(default_factory=list)
    # Leads that became this user's (nothing on their document: the owner-change listeners hear it).
    scope_entries: list[str] = field(default_factory=list)

    def update(self, at: datetime) -> dict:
        inc: dict[str, int] = {}
        if self.open_leads:
            inc["open_leads"] = self.open_leads
        if self.assigned and self.assigned_on:
            inc[f"assigned.{self.assigned_on}"] = self.assigned
        update: dict[str, Any] = {"$inc": inc} if inc else {}
        if self.assigned:
            update["$currentDate"] = {"last_assigned_at": True}
        if self.scope_exits:
            update.update(scope_exit_update(self.scope_exits, at))
        return update


def public_id(doc: dict) -> dict:
    """A document with ``id`` as a string, ready for an ``*Out`` model."""
    return {**doc, "id": str(doc["_id"])}


def user_out(doc: dict) -> dict:
    return {**public_id(doc), "wechat_bound": bool(doc.get("openid"))}


class UserService:
    def __init__(
        self, *, users, teams, bind_codes, sessions: SessionStore, clock: Clock, passwords: Passwords, audit: AuditService, bind_code_ttl_s: int,
        auth_cache_ttl_s: float = 1.0,
        settings: Settings | None = None,
    ) -> None:
        self._recent = RecentUsers(auth_cache_ttl_s)  # what request authentication read, ≤ 1 s
        self._users = users
        self._teams = teams
        self._bind_codes = bind_codes
        self._sessions = sessions
        self._clock = clock
        self._passwords = passwords
        self._audit = audit
        self._bind_ttl = timedelta(seconds=bind_code_ttl_s)
        self._pool_cache: dict[str, tuple[float, dict]] = {}
        self._settings = settings or Settings()
        self._settings_cache: dict[str, tuple[float, TeamSettings]] = {}
        self._owner_listeners: list[Callable[[dict[str, str | None], datetime], Awaitable[None]]] = []

    # ------------------------------------------------------------ reads used by auth
    async def by_id(self, user_id: str) -> dict | None:
        oid = maybe_oid(user_id)
        return await self._users.find_one({"_id": oid}) if oid else None

    async def signed_in(self, user_id: str, *, fresh: bool = False) -> tuple[dict | None, bool]:
        """The user a request's token names, for its auth check: ``(doc, read_now)``. What this
        instance read within the last ``MPCRM_AUTH_CACHE_TTL_S`` (≤ 1 s; only the fields auth
        needs, ``read_now`` False), else the whole document read now and remembered. ``fresh``
        always reads. Every write here that changes those fields forgets the user at once."""
        if not fresh:
            recent = self._recent.get(str(user_id))
            if recent is not None:
                return recent, False
        return await self._recent.read(str(user_id), lambda: self.by_id(user_id)), True

    async def by_username(self, username: str) -> dict | None:
        return await self._users.find_one({"username": username})

    async def by_openid(self, openid: str) -> dict | None:
        return await self._users.find_one({"openid": openid})

    async def active_staff_id(self, user_id: str) -> str | None:
        """``user_id`` when it names an active rep, manager or admin, else None (a form's referrer)."""
        oid = maybe_oid(user_id)
        if oid is None:
            return None
        doc = await self._users.find_one({"_id": oid, "active": True, "role": {"$in": list(STAFF_ROLES)}}, projection={"_id": 1})
        return str(doc["_id"]) if doc else None

    async def active_managers(self, team_ids: Iterable[str | None]) -> dict[str, list[str]]:
        """The ids of the active managers of each team, in one read (teams with none are absent)."""
        found: dict[str, list[str]] = {}
        ids = sorted({t for t in team_ids if t})
        if ids:
            for d in await self._users.find({"team_id": {"$in": ids}, "role": "manager", "active": True}, {"team_id": 1}).to_list(None):
                found.setdefault(str(d["team_id"]), []).append(str(d["_id"]))
        return found

    # ------------------------------------------------------------ writes asked for by auth
    async def customer_for(self, openid: str, now: datetime) -> dict | None:
        """One customer account per openid, even when two logins race: the unique index decides."""
        try:
            await self._users.update_one(
                {"openid": openid},
                {
                    "$setOnInsert": {
                        "name": "微信用户",
                        "role": "customer",
                        "active": True,
                        "tags": [],
                        "token_version": 1,
                        "version": 1,
                        "created_at": now,
                        "updated_at": now,
                    }
                },
                upsert=True,
            )
        except DuplicateKeyError:
            pass  # the other login created it
        return await self.by_openid(openid)

    async def record_wechat_login(self, user_oid: ObjectId, sealed_session: dict) -> None:
        await self._users.update_one({"_id": user_oid}, {"$set": {"wechat_session": sealed_session}, "$currentDate": {"last_login_at": True}})

    async def pending_bind_code(self, code_hash: str, now: datetime) -> dict | None:
        return await self._bind_codes.find_one({"_id": code_hash, "used_at": None, "expires_at": {"$gt": now}})

    async def consume_bind_code(self, code_hash: str) -> bool:
        """Use the code up atomically: of two racing binds, one wins."""
        used = await self._bind_codes.find_one_and_update(
            {"_id": code_hash, "used_at": None}, {"$currentDate": {"used_at": True}}, return_document=ReturnDocument.AFTER
        )
        return used is not None

    async def retire_customer(self, customer_oid: ObjectId, staff_id: str) -> None:
        """A customer account whose WeChat now belongs to a staff member: signed out and retired."""
        await self._users.update_one(
            {"_id": customer_oid},
            {"$unset": {"openid": ""}, "$set": {"active": False, "retired_into": staff_id}, "$currentDate": {"updated_at": True}, "$inc": {"token_version": 1}},
        )
        self._recent.forget(customer_oid)

    async def bind_openid(self, staff_oid: ObjectId, openid: str) -> dict:
        try:
            return await self._users.find_one_and_update(
                {"_id": staff_oid},
                {"$set": {"openid": openid}, "$currentDate": {"updated_at": True}, "$inc": {"version": 1}},
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            raise Conflict("auth.openid_bound") from None

    # ------------------------------------------------------------ lead counters (asked for by the lead services)
    async def adjust_open_leads(self, owner_id: str, delta: int) -> None:
        """Each owner's count of open leads, for capacity checks and least-loaded allocation."""
        await self.record_lead_changes({owner_id: OwnerTally(open_leads=delta)}, self._clock.now())

    async def record_scope_exit(self, user_id: str, lead_id: str, at: datetime) -> None:
        """A lead left a rep's scope (released, reassigned, reclaimed): offline sync must drop it.

        Kept on the rep's own user document (read on every request anyway), so a sync page pays
        nothing extra for it; see ``scope_exit_update``."""
        await self.record_lead_changes({user_id: OwnerTally(scope_exits=[lead_id])}, at)

    @staticmethod
    def owner_follow_ops(moves: dict[str, str | None], field: str) -> list[UpdateMany]:
        """For a listener of ``on_lead_owner_change`` that keeps a copy of the lead's owner for
        scoping (``field``): the updates that set it to each lead's new owner on every document
        with that ``lead_id``; the owner of those documents applies them in one ``bulk_write``."""
        by_owner: dict[str | None, list[str]] = {}
        for lead_id, owner in moves.items():
            by_owner.setdefault(owner, []).append(lead_id)
        return [UpdateMany({"lead_id": {"$in": ids}, field: {"$ne": owner}}, {"$set": {field: owner}}) for owner, ids in by_owner.items()]

    def on_lead_owner_change(self, listener: Callable[[dict[str, str | None], datetime], Awaitable[None]]) -> None:
        """``listener(moves, at)`` hears of every lead that changed hands (``{lead_id: new owner id,
        or None for the pool}``), once per report of ``record_lead_changes`` — one call for a
        sweep's or a bulk assignment's many. The ticket service keeps its scope in step this way."""
        self._owner_listeners.append(listener)

    async def record_lead_changes(self, tallies: dict[str, OwnerTally], at: datetime, *, once: tuple[str, int] | None = None) -> None:
        """The one place ``open_leads`` (and the allocation and scope-exit records beside it) change,
        and where every change of a lead's owner is reported (``scope_exits`` of the previous owner,
        ``scope_entries`` of the new one, in the same call): one update for one user, one bulk write
        for a sweep's many; then the owner-change listeners hear of the moves.

        ``once = (key, seq)`` applies the changes at most once per user for that key and sequence
        number (a batch of a hand-over repeated after a crash): each user keeps ``tallied.<key>``,
        the last sequence applied, and the update matches only below it. The listeners hear of a
        repeated batch again (what they write is idempotent)."""
        def guarded(oid: ObjectId, update: dict) -> tuple[dict, dict]:
            if once is None:
                return {"_id": oid}, update
            field_ = f"tallied.{once[0]}"
            # One $and: beside a top-level $or nx-27017 drops the `_id` condition (docs/mongodb-compat.md).
            return ({"$and": [{"_id": oid}, {"$or": [{field_: {"$exists": False}}, {field_: {"$lt": once[1]}}]}]},
                    {**update, "$set": {**update.get("$set", {}), field_: once[1]}})

        updates = [guarded(oid, update) for uid, tally in tallies.items() if (oid := maybe_oid(uid)) is not None and (update := tally.update(at))]
        if len(updates) == 1:
            await self._users.update_one(*updates[0])
        elif updates:
            await self._users.bulk_write([UpdateOne(f, u) for f, u in updates], ordered=False)
        moves = owner_moves(tallies) if self._owner_listeners else {}
        for listener in self._owner_listeners if moves else ():
            await listener(moves, at)

    async def reserve_claim(self, actor: Actor, today: str, limit: int) -> dict:
        """One atomic update on the rep: still active with this token, under capacity, under today's
        claim limit; the slot counts as an open lead at once. Returns the rep; explains a refusal
        with a second read."""
        rep = await self._users.find_one_and_update(
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
        fresh = await self._users.find_one({"_id": ObjectId(actor.id)}, {"active": 1, "token_version": 1, "open_leads": 1, "capacity": 1})
        if fresh is None or not fresh.get("active") or fresh.get("token_version") != actor.token_version:
            raise Unauthorized("auth.invalid_token")
        if fresh.get("open_leads", 0) >= fresh.get("capacity", 0):
            raise Conflict("pool.at_capacity", params={"capacity": fresh.get("capacity", 0)})
        raise Conflict("pool.daily_limit", params={"limit": limit})

    async def give_back_claim(self, user_oid: ObjectId, today: str) -> None:
        """A reservation whose claim lost: the slot and today's count are returned."""
        await self._users.update_one({"_id": user_oid}, {"$inc": {"open_leads": -1, f"claims.{today}": -1}})

    async def reseal_sessions(self, cipher, batch_size: int = 500) -> int:
        """Field-key rotation of the kept WeChat session keys (see server/services/keys.py)."""
        done = 0
        async for ops in resealed(self._users, "wechat_session", cipher, batch_size):
            done += (await self._users.bulk_write(ops, ordered=False)).modified_count
        return done

    # ------------------------------------------------------------ users
    async def create_user(self, actor: Actor, data: UserCreate) -> dict:
        require_role(actor, "admin")
        if data.role in ("rep", "manager") and not data.team_id:
            raise Invalid("user.team_required", details=[detail("team_id", "required", text="team_required")])
        if data.team_id:
            await self._existing_team(data.team_id)
        now = self._clock.now()
        doc: dict[str, Any] = {
            "username": data.username,
            "name": data.name,
            "role": data.role,
            "team_id": data.team_id,
            "tags": sorted(set(data.tags)),
            "capacity": data.capacity,
            "finance": data.finance,
            "service": data.service,
            "active": data.active,
            "token_version": 1,
            "open_leads": 0,
            "version": 1,
            "created_at": now,
            "updated_at": now,
            "created_by": actor.id,
        }
        if data.password:
            doc["password_hash"] = await self._passwords.hash(data.password)
        try:
            result = await self._users.insert_one(doc)
        except DuplicateKeyError:
            raise Conflict("user.username_taken", details=[detail("username", "taken", text="username_taken")]) from None
        doc["_id"] = result.inserted_id
        await self._audit.record(actor, "user.create", target_type="user", target_id=str(doc["_id"]), details={"role": data.role})
        return doc

    async def get_user(self, actor: Actor, user_id: str) -> dict:
        require_role(actor, "admin", "manager")
        doc = await self._users.find_one({"_id": parse_oid(user_id, "user.not_found"), **self._user_scope(actor)})
        if doc is None:
            raise NotFound("user.not_found")
        return doc

    async def list_users(self, actor: Actor, query: UserListQuery) -> Page:
        require_role(actor, "admin", "manager")
        filter_: dict[str, Any] = {}
        if query.team_id:
            filter_["team_id"] = query.team_id
        if query.role:
            filter_["role"] = query.role
        if query.active is not None:
            filter_["active"] = query.active
        filter_.update(self._user_scope(actor))  # scope last: a filter never widens it
        return await paginate(self._users, filter_, limit=query.limit, cursor=query.cursor)

    async def update_user(self, actor: Actor, user_id: str, data: UserUpdate, version: int) -> dict:
        """The whole change is checked against the user as it is (null fields were refused by the
        schema) before the one version-guarded write: a 4xx means nothing was written."""
        require_role(actor, "admin")
        oid = parse_oid(user_id, "user.not_found")
        changes = data.model_dump(exclude_unset=True, exclude={"version"})
        if changes.get("active") is False and str(oid) == actor.id:
            raise Invalid("user.cannot_deactivate_self", details=[detail("active", "self", text="deactivate_self")])
        current = await self._users.find_one({"_id": oid})
        if current is None:
            raise NotFound("user.not_found")
        if current["version"] != version:
            raise VersionMismatch("user.version_mismatch")
        _check_user_change(current, changes)
        if changes.get("team_id"):
            await self._existing_team(changes["team_id"])
        if "tags" in changes:
            changes["tags"] = sorted(set(changes["tags"]))
        password = changes.pop("password", None)
        if password:
            changes["password_hash"] = await self._passwords.hash(password)
        update: dict[str, Any] = {"$currentDate": {"updated_at": True}, "$inc": {"version": 1}}
        if changes:
            update["$set"] = changes
        logs_out = bool(_SESSION_FIELDS & set(data.model_fields_set))
        if logs_out:
            update["$inc"]["token_version"] = 1
        doc = await self._users.find_one_and_update(
            {"_id": oid, "version": version}, update, return_document=ReturnDocument.AFTER
        )
        self._recent.forget(oid)  # this instance sees the change at once (others within a second)
        if doc is None:
            await self._raise_missing_or_stale(self._users, oid, "user")
        if logs_out:
            await self._sessions.revoke_user(str(oid))
        await self._audit.record(
            actor, "user.update", target_type="user", target_id=str(oid),
            details={"fields": sorted(k for k in data.model_fields_set if k != "version")},
        )
        return doc

    async def make_bind_code(self, actor: Actor, user_id: str) -> dict:
        """A one-time code a staff member enters in the mini-program to bind their WeChat."""
        require_role(actor, "admin")
        user = await self._users.find_one({"_id": parse_oid(user_id, "user.not_found")})
        if user is None or user["role"] == "customer":
            raise NotFound("user.not_found")
        code = "".join(secrets.choice(_BIND_ALPHABET) for _ in range(10))
        now = self._clock.now()
        await self._bind_codes.delete_many({"user_id": str(user["_id"])})  # a new code replaces the old
        await self._bind_codes.insert_one(
            {"_id": token_hash(code), "user_id": str(user["_id"]), "expires_at": now + self._bind_ttl, "created_by": actor.id}
        )
        await self._audit.record(actor, "user.bind_code", target_type="user", target_id=str(user["_id"]))
        return {"code": code, "expires_at": now + self._bind_ttl}

    def _user_scope(self, actor: Actor) -> dict:
        return {} if actor.is_admin else {"team_id": actor.team_id or "-"}

    async def team_by_name(self, name: str) -> dict | None:
        return await self._teams.find_one({"name": name})

    async def team_pool_settings(self, team_id: str | None) -> dict:
        """The team's pool rules, cached for a short while: they change rarely and claims are hot."""
        now = time.monotonic()
        cached = self._pool_cache.get(team_id or "")
        if cached and cached[0] > now:
            return cached[1]
        team = await self._teams.find_one({"_id": maybe_oid(team_id)}, {"pool": 1}) if team_id else None
        settings = {**PoolSettings().model_dump(), **((team or {}).get("pool") or {})}
        self._pool_cache[team_id or ""] = (now + _POOL_CACHE_S, settings)
        return settings

    async def team_settings(self, team_id: str | None) -> TeamSettings:
        """A team's effective settings (server/schemas/team_settings.py): the defaults with what the
        team stored over them; no team (or an unknown one) gets the defaults. Cached like the pool
        rules: an admin's change reaches another instance within ``_POOL_CACHE_S``."""
        now = time.monotonic()
        cached = self._settings_cache.get(team_id or "")
        if cached and cached[0] > now:
            return cached[1]
        oid = maybe_oid(team_id) if team_id else None
        team = await self._teams.find_one({"_id": oid}, {"settings": 1}) if oid is not None else None
        value = effective_team_settings(self._settings, (team or {}).get("settings"))
        self._settings_cache[team_id or ""] = (now + _POOL_CACHE_S, value)
        return value

    def forget_team_settings(self, team_id: str) -> None:
        self._settings_cache.pop(team_id, None)
        self._pool_cache.pop(team_id, None)

    # ------------------------------------------------------------ teams
    async def create_team(self, actor: Actor, data: TeamCreate) -> dict:
        require_role(actor, "admin")
        now = self._clock.now()
        doc = {**data.model_dump(), "version": 1, "created_at": now, "updated_at": now, "created_by": actor.id}
        try:
            result = await self._teams.insert_one(doc)
        except DuplicateKeyError:
            raise Conflict("team.name_taken", details=[detail("name", "taken", text="team_name_taken")]) from None
        doc["_id"] = result.inserted_id
        await self._audit.record(actor, "team.create", target_type="team", target_id=str(doc["_id"]))
        return doc

    async def get_team(self, actor: Actor, team_id: str) -> dict:
        require_role(actor, "admin", "manager")
        oid = parse_oid(team_id, "team.not_found")
        if not actor.is_admin and str(oid) != actor.team_id:
            raise NotFound("team.not_found")
        doc = await self._teams.find_one({"_id": oid})
        if doc is None:
            raise NotFound("team.not_found")
        return doc

    async def list_teams(self, actor: Actor, limit: int, cursor: str | None) -> Page:
        require_role(actor, "admin", "manager")
        filter_ = {} if actor.is_admin else {"_id": maybe_oid(actor.team_id)}
        return await paginate(self._teams, filter_, limit=limit, cursor=cursor)

    async def update_team(self, actor: Actor, team_id: str, data: TeamUpdate, version: int) -> dict:
        require_role(actor, "admin")
        oid = parse_oid(team_id, "team.not_found")
        changes = data.model_dump(exclude_unset=True, exclude={"version"})
        for group in ("pool", "reclaim"):  # a setting left out keeps its value: set field by field
            for name, value in (changes.pop(group, None) or {}).items():
                changes[f"{group}.{name}"] = value
        try:
            doc = await self._teams.find_one_and_update(
                {"_id": oid, "version": version},
                {**({"$set": changes} if changes else {}), "$currentDate": {"updated_at": True}, "$inc": {"version": 1}},
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            raise Conflict("team.name_taken", details=[detail("name", "taken", text="team_name_taken")]) from None
        if doc is None:
            await self._raise_missing_or_stale(self._teams, oid, "team")
        self._pool_cache.pop(str(oid), None)
        await self._audit.record(actor, "team.update", target_type="team", target_id=str(oid), details={"fields": sorted(changes)})
        return doc

    # ------------------------------------------------------------ team settings (团队设置)
    async def get_team_settings(self, actor: Actor, team_id: str) -> dict:
        """Admins read any team's settings, a manager their own team's (read-only)."""
        team = await self.get_team(actor, team_id)
        return self._settings_view(team)

    async def update_team_settings(self, actor: Actor, team_id: str, patch: Any, version: int) -> dict:
        """Any subset of groups, inside a group any subset of fields; a group set to null goes back
        to its defaults. The whole result is validated (the order checks of every group changed,
        named approvers) before the one version-guarded write: a 4xx means nothing was written.
        This instance sees the change at once; others within ``_POOL_CACHE_S`` (their cache)."""
        require_role(actor, "admin")
        oid = parse_oid(team_id, "team.not_found")
        team = await self._teams.find_one({"_id": oid})
        if team is None:
            raise NotFound("team.not_found")
        if team["version"] != version:
            raise VersionMismatch("team.version_mismatch")
        changes = patch.changes()
        try:
            after, effective = apply_settings_patch(self._settings, team.get("settings"), changes)
        except ValidationError as exc:
            raise Invalid("team.settings_invalid", details=validation_details(exc)) from None
        if changes.get("approval") is not None:
            await self._check_approvers(effective)
        before = effective_team_settings(self._settings, team.get("settings")).model_dump(mode="json")
        update: dict[str, Any] = {"$currentDate": {"updated_at": True}, "$inc": {"version": 1}}
        sets = {f"settings.{g}": after[g] for g, fields in changes.items() if fields is not None}
        unsets = {f"settings.{g}": "" for g, fields in changes.items() if fields is None}
        if sets:
            update["$set"] = sets
        if unsets:
            update["$unset"] = unsets
        doc = await self._teams.find_one_and_update({"_id": oid, "version": version}, update, return_document=ReturnDocument.AFTER)
        if doc is None:
            await self._raise_missing_or_stale(self._teams, oid, "team")
        self.forget_team_settings(str(oid))
        await self._audit.record(actor, "team.settings", target_type="team", target_id=str(oid),
                                 details=_settings_diff(before, effective.model_dump(mode="json"), changes))
        return self._settings_view(doc, effective)

    async def settings_book(self) -> TeamSettingsBook:
        """Every team's effective settings in one read, for a job that handles many teams: its
        commands do not grow with the teams or their leads."""
        teams = await self._teams.find({}, {"settings": 1}).to_list(None)
        return TeamSettingsBook(
            effective_team_settings(self._settings, None),
            {str(t["_id"]): effective_team_settings(self._settings, t["settings"]) for t in teams if stored_groups(t.get("settings"))},
        )

    def _settings_view(self, team: dict, effective: TeamSettings | None = None) -> dict:
        stored = stored_groups(team.get("settings"))
        return {
            "team_id": str(team["_id"]), "version": team["version"], "updated_at": team.get("updated_at"),
            "customized": sorted(stored), "customized_fields": {g: sorted(v) for g, v in sorted(stored.items())},
            "settings": effective or effective_team_settings(self._settings, team.get("settings")),
        }

    async def _check_approvers(self, effective: TeamSettings) -> None:
        """Every user an approval step names is an active manager or admin (by id or username)."""
        named = [(f"approval.tiers.{t}.steps.{s}.users.{u}", ref) for t, tier in enumerate(effective.approval.tiers)
                 for s, step in enumerate(tier.steps) for u, ref in enumerate(step.users)]
        if not named:
            return
        refs = sorted({ref for _, ref in named})
        oids = [o for o in (maybe_oid(r) for r in refs) if o is not None]
        ors: list[dict] = [{"username": {"$in": refs}}] + ([{"_id": {"$in": oids}}] if oids else [])
        found = await self._users.find({"$or": ors}, {"username": 1, "role": 1, "active": 1}).to_list(None)
        good = {key for u in found if u.get("active") and u.get("role") in ("manager", "admin") for key in (str(u["_id"]), u.get("username"))}
        bad = [detail(where, "approver", text="approver_not_active_staff", value=ref, user=ref) for where, ref in named if ref not in good]
        if bad:
            raise Invalid("team.settings_invalid", details=bad)

    async def _existing_team(self, team_id: str) -> dict:
        team = await self._teams.find_one({"_id": maybe_oid(team_id)})
        if team is None:
            raise Invalid("team.not_found", details=[detail("team_id", "unknown", text="team_unknown")])
        return team

    @staticmethod
    async def _raise_missing_or_stale(collection, oid: ObjectId, kind: str) -> None:
        if await collection.find_one({"_id": oid}, {"_id": 1}) is None:
            raise NotFound(f"{kind}.not_found")
        raise VersionMismatch(f"{kind}.version_mismatch")


def _settings_diff(before: dict, after: dict, changes: dict[str, dict | None]) -> dict:
    """What a settings change did, for the audit log: the groups sent, those reset, and every field
    whose effective value changed (with old and new values for scalars)."""
    fields: list[dict[str, Any]] = []
    for group in sorted(changes):
        old_group, new_group = before.get(group) or {}, after.get(group) or {}
        for name in sorted(set(old_group) | set(new_group)):
            old, new = old_group.get(name), new_group.get(name)
            if old == new:
                continue
            entry: dict[str, Any] = {"field": f"{group}.{name}"}
            if all(v is None or isinstance(v, (str, int, float, bool)) for v in (old, new)):
                entry.update(old=old, new=new)
            fields.append(entry)
    return {"groups": sorted(changes), "reset": sorted(g for g, v in changes.items() if v is None), "fields": fields}


def _check_user_change(current: dict, changes: dict) -> None:
    """Rules across fields, on the user as it would be after the change."""
    if current.get("role") == "customer" and ("role" in changes or changes.get("team_id")):
        # Customers sign in with WeChat; staff are created as staff (POST /users).
        field = "role" if "role" in changes else "team_id"
        raise Invalid("user.customer_role", details=[detail(field, "customer", text="customer_account")])
    after = {**current, **changes}
    if after.get("role") in ("rep", "manager") and not after.get("team_id"):
        raise Invalid("user.team_required", details=[detail("team_id", "required", text="team_required")])
