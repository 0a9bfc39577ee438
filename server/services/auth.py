"""Logins, token pairs, refresh-token rotation and request authentication.

Refresh tokens are opaque, stored only as SHA-256 hashes, and rotate on every use. Each login
starts a *family*; presenting a token that was already spent means it was stolen or replayed, so
the whole family is revoked. A user's ``token_version`` changes when they are deactivated or their
role or password changes, and every request checks it, so such a change locks them out at once.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from server.actor import STAFF_ROLES, Actor
from server.clock import Clock
from server.errors import Conflict, Unauthorized
from server.security import FieldCipher, Passwords, TokenError, Tokens, new_opaque_token, token_hash
from server.services.audit import AuditService
from server.services.sessions import SessionStore
from server.services.users import UserService
from server.services.wechat import WechatClient


class AuthService:
    def __init__(
        self,
        *,
        clock: Clock,
        tokens: Tokens,
        passwords: Passwords,
        cipher: FieldCipher,
        users: UserService,
        sessions: SessionStore,
        wechat: WechatClient,
        audit: AuditService,
        refresh_ttl_s: int,
        limiter=None,
        login_limits: tuple[int, int, int] = (10, 30, 300),
    ) -> None:
        self._limiter = limiter  # RateLimiter: password logins per username and per client address
        self._user_limit, self._ip_limit, self._login_window_s = login_limits
        self._sessions = sessions
        self._clock = clock
        self._tokens = tokens
        self._passwords = passwords
        self._cipher = cipher
        self._users = users
        self._wechat = wechat
        self._audit = audit
        self._refresh_ttl = timedelta(seconds=refresh_ttl_s)

    # ------------------------------------------------------------ request authentication
    async def authenticate(self, access_token: str, *, fresh: bool = False) -> tuple[Actor, dict | None]:
        """The caller and, when it was read for this request, their user document (else None).

        The user is checked on every request (active, same ``token_version`` and role), against
        what this instance read of them within the last ``MPCRM_AUTH_CACHE_TTL_S`` (≤ 1 s), or one
        database read: deactivation and role or password changes lock a user out at once on the
        instance that made them (``UserService`` forgets the user) and within a second on the
        others. ``fresh`` always reads (for answers made from the user document itself)."""
        try:
            claims = self._tokens.decode_access(access_token)
        except TokenError:
            raise Unauthorized("auth.invalid_token") from None
        user, read_now = await self._users.signed_in(claims.user_id, fresh=fresh)
        if (
            user is None
            or not user.get("active", False)
            or user.get("token_version") != claims.token_version
            or user.get("role") != claims.role
        ):
            raise Unauthorized("auth.invalid_token")
        return Actor.from_user(user), (user if read_now else None)

    async def public_caller(self, access_token: str) -> tuple[Actor | None, dict | None]:
        """Who calls a public endpoint: a forged or malformed token is 401, but a genuine token of a
        user who is deactivated, gone or signed out (``token_version``) is treated as no token."""
        try:
            return await self.authenticate(access_token)
        except Unauthorized:
            self.actor_from_token(access_token)  # raises again when the token itself is bad
            return None, None

    def actor_from_token(self, access_token: str) -> Actor:
        """The caller named by a valid token, without a database read: for public endpoints, and for
        operations whose first write re-checks the user (active, same ``token_version``) itself."""
        try:
            claims = self._tokens.decode_access(access_token)
        except TokenError:
            raise Unauthorized("auth.invalid_token") from None
        return Actor(id=claims.user_id, role=claims.role, team_id=claims.team_id, token_version=claims.token_version)

    # ------------------------------------------------------------ logins
    async def password_login(self, username: str, password: str, client_ip: str | None = None) -> dict:
        """Throttled per client address and per username before anything else (every attempt
        counts, right or wrong, so a success resets nothing); only then the user and Argon2."""
        if self._limiter is not None:
            if client_ip:
                await self._limiter.hit("login-ip", client_ip, self._ip_limit, self._login_window_s)
            await self._limiter.hit("login-user", token_hash(username.casefold())[:32], self._user_limit, self._login_window_s)
        user = await self._users.by_username(username)
        ok = await self._passwords.verify(user.get("password_hash") if user else None, password)
        if not ok or user is None or not user.get("active") or user.get("role") not in STAFF_ROLES:
            raise Unauthorized("auth.invalid_credentials")
        return await self.issue_tokens(user, family_id=None)

    async def wechat_login(self, code: str, bind_code: str | None) -> dict:
        session = await self._wechat.code2session(code)
        if bind_code:
            user = await self._bind_staff(session.openid, bind_code)
        else:
            found = await self._users.by_openid(session.openid) or await self._users.customer_for(session.openid, self._clock.now())
            if found is None:  # pragma: no cover - the upsert or the racing login made it
                raise Unauthorized("auth.invalid_credentials")
            if not found.get("active"):
                raise Unauthorized("auth.invalid_credentials")
            user = found
        # Keep the session key (encrypted) for the older encryptedData flow; it never leaves the server.
        await self._users.record_wechat_login(user["_id"], self._cipher.encrypt(session.session_key, str(user["_id"])))
        return await self.issue_tokens(user, family_id=None)

    async def _bind_staff(self, openid: str, bind_code: str) -> dict:
        now = self._clock.now()
        code_hash = token_hash(bind_code.strip().upper())
        pending = await self._users.pending_bind_code(code_hash, now)
        if pending is None:
            raise Unauthorized("auth.bind_code_invalid")
        staff = await self._users.by_id(pending["user_id"])
        if staff is None or not staff.get("active") or staff.get("role") not in STAFF_ROLES:
            raise Unauthorized("auth.bind_code_invalid")
        holder = await self._users.by_openid(openid)
        if holder is not None and holder["_id"] != staff["_id"] and holder.get("role") != "customer":
            raise Conflict("auth.openid_bound")
        # Consume the code atomically: of two racing binds, one wins.
        if not await self._users.consume_bind_code(code_hash):
            raise Unauthorized("auth.bind_code_invalid")
        if holder is not None and holder["_id"] != staff["_id"]:
            # The staff member had opened the mini-program as a customer first: retire that account.
            await self._users.retire_customer(holder["_id"], str(staff["_id"]))
        staff = await self._users.bind_openid(staff["_id"], openid)
        actor = Actor.from_user(staff)
        await self._audit.record(actor, "user.wechat_bind", target_type="user", target_id=actor.id)
        return staff

    # ------------------------------------------------------------ refresh tokens
    async def issue_tokens(self, user: dict, family_id: str | None = None) -> dict:
        now = self._clock.now()
        refresh_token = new_opaque_token("rt_")
        await self._sessions.start(token_hash(refresh_token), family_id or uuid.uuid4().hex, str(user["_id"]), now, self._refresh_ttl)
        access = self._tokens.issue_access(
            user_id=str(user["_id"]), role=user["role"], token_version=user.get("token_version", 1), now=now, team_id=user.get("team_id")
        )
        return {"access_token": access, "refresh_token": refresh_token, "expires_in": self._tokens.access_ttl, "user": user}

    async def refresh(self, refresh_token: str) -> dict:
        now = self._clock.now()
        digest = token_hash(refresh_token)
        spent = await self._sessions.spend(digest, now)
        if spent is None:
            known = await self._sessions.find(digest)
            # A token already rotated and shown again was stolen or replayed: revoke its family.
            # One revoked by logout or deactivation, never used, is simply no longer valid.
            if known is not None and known.get("used_at"):
                await self._sessions.revoke_family(known["family_id"])
                await self._audit.record(
                    Actor(id=known["user_id"], role="unknown"), "auth.refresh_reuse",
                    target_type="user", target_id=known["user_id"], outcome="refused",
                )
                raise Unauthorized("auth.refresh_token_reused")
            raise Unauthorized("auth.invalid_refresh_token")
        user = await self._users.by_id(spent["user_id"])
        if user is None or not user.get("active"):
            raise Unauthorized("auth.invalid_refresh_token")
        return await self.issue_tokens(user, family_id=spent["family_id"])

    async def logout(self, actor: Actor, refresh_token: str) -> None:
        """Revoke the session (the token's whole family). Unknown tokens are ignored: logout is idempotent."""
        known = await self._sessions.find(token_hash(refresh_token), actor.id)
        if known is not None:
            await self._sessions.revoke_family(known["family_id"])
