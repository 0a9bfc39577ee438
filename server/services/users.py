"""Users and teams. Admins write; a manager reads their own team; reps and customers neither."""

from __future__ import annotations

import secrets
import time
from datetime import timedelta
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from server.actor import Actor, require_role
from server.clock import Clock
from server.errors import Conflict, Invalid, NotFound, VersionMismatch
from server.ids import maybe_oid, parse_oid
from server.paging import Page, paginate
from server.schemas.users import PoolSettings, TeamCreate, TeamUpdate, UserCreate, UserListQuery, UserUpdate
from server.security import Passwords, token_hash
from server.services.audit import AuditService

# Changing one of these logs the user out everywhere at once.
_SESSION_FIELDS = {"role", "active", "password", "team_id"}
_POOL_CACHE_S = 30.0
_BIND_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: typed on a phone


def public_id(doc: dict) -> dict:
    """A document with ``id`` as a string, ready for an ``*Out`` model."""
    return {**doc, "id": str(doc["_id"])}


def user_out(doc: dict) -> dict:
    return {**public_id(doc), "wechat_bound": bool(doc.get("openid"))}


class UserService:
    def __init__(self, db, clock: Clock, passwords: Passwords, audit: AuditService, bind_code_ttl_s: int) -> None:
        self._users = db["users"]
        self._teams = db["teams"]
        self._bind_codes = db["bind_codes"]
        self._refresh = db["refresh_tokens"]
        self._clock = clock
        self._passwords = passwords
        self._audit = audit
        self._bind_ttl = timedelta(seconds=bind_code_ttl_s)
        self._pool_cache: dict[str, tuple[float, dict]] = {}

    # ------------------------------------------------------------ reads used by auth
    async def by_id(self, user_id: str) -> dict | None:
        oid = maybe_oid(user_id)
        return await self._users.find_one({"_id": oid}) if oid else None

    async def by_username(self, username: str) -> dict | None:
        return await self._users.find_one({"username": username})

    # ------------------------------------------------------------ users
    async def create_user(self, actor: Actor, data: UserCreate) -> dict:
        require_role(actor, "admin")
        if data.role in ("rep", "manager") and not data.team_id:
            raise Invalid("user.team_required", details=[_detail("team_id", "required")])
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
            raise Conflict("user.username_taken", details=[_detail("username", "taken")]) from None
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
            raise Invalid("user.cannot_deactivate_self", details=[_detail("active", "self")])
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
        if doc is None:
            await self._raise_missing_or_stale(self._users, oid, "user")
        if logs_out:
            await self._refresh.update_many({"user_id": str(oid)}, {"$set": {"revoked": True}})
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

    # ------------------------------------------------------------ teams
    async def create_team(self, actor: Actor, data: TeamCreate) -> dict:
        require_role(actor, "admin")
        now = self._clock.now()
        doc = {**data.model_dump(), "version": 1, "created_at": now, "updated_at": now, "created_by": actor.id}
        try:
            result = await self._teams.insert_one(doc)
        except DuplicateKeyError:
            raise Conflict("team.name_taken", details=[_detail("name", "taken")]) from None
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
        try:
            doc = await self._teams.find_one_and_update(
                {"_id": oid, "version": version},
                {**({"$set": changes} if changes else {}), "$currentDate": {"updated_at": True}, "$inc": {"version": 1}},
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            raise Conflict("team.name_taken", details=[_detail("name", "taken")]) from None
        if doc is None:
            await self._raise_missing_or_stale(self._teams, oid, "team")
        self._pool_cache.pop(str(oid), None)
        await self._audit.record(actor, "team.update", target_type="team", target_id=str(oid), details={"fields": sorted(changes)})
        return doc

    async def _existing_team(self, team_id: str) -> dict:
        team = await self._teams.find_one({"_id": maybe_oid(team_id)})
        if team is None:
            raise Invalid("team.not_found", details=[_detail("team_id", "unknown")])
        return team

    @staticmethod
    async def _raise_missing_or_stale(collection, oid: ObjectId, kind: str) -> None:
        if await collection.find_one({"_id": oid}, {"_id": 1}) is None:
            raise NotFound(f"{kind}.not_found")
        raise VersionMismatch(f"{kind}.version_mismatch")


def _check_user_change(current: dict, changes: dict) -> None:
    """Rules across fields, on the user as it would be after the change."""
    if current.get("role") == "customer" and ("role" in changes or changes.get("team_id")):
        # Customers sign in with WeChat; staff are created as staff (POST /users).
        field = "role" if "role" in changes else "team_id"
        raise Invalid("user.customer_role", details=[_detail(field, "customer")])
    after = {**current, **changes}
    if after.get("role") in ("rep", "manager") and not after.get("team_id"):
        raise Invalid("user.team_required", details=[_detail("team_id", "required")])


def _detail(field: str, code: str) -> dict:
    return {"field": field, "code": code, "message": code}
