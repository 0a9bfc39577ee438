"""Refresh-token sessions: the only writer of ``refresh_tokens``.

Tokens are stored as SHA-256 hashes; each login starts a *family*. ``AuthService`` issues, rotates
and revokes them; ``UserService`` revokes a user's sessions when a change logs them out; the
``purge_revoked_sessions`` job deletes revoked ones.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pymongo import ReturnDocument


class SessionStore:
    def __init__(self, refresh_tokens) -> None:
        self._refresh = refresh_tokens

    async def start(self, digest: str, family_id: str, user_id: str, now: datetime, ttl: timedelta) -> None:
        await self._refresh.insert_one(
            {
                "_id": digest,
                "family_id": family_id,
                "user_id": user_id,
                "created_at": now,
                "expires_at": now + ttl,
                "used_at": None,
                "revoked": False,
            }
        )

    async def spend(self, digest: str, now: datetime) -> dict | None:
        """Mark a live token used, atomically: of two racing refreshes, one wins."""
        return await self._refresh.find_one_and_update(
            {"_id": digest, "used_at": None, "revoked": False, "expires_at": {"$gt": now}},
            {"$currentDate": {"used_at": True}},
            return_document=ReturnDocument.AFTER,
        )

    async def find(self, digest: str, user_id: str | None = None) -> dict | None:
        return await self._refresh.find_one({"_id": digest, **({"user_id": user_id} if user_id is not None else {})})

    async def revoke_family(self, family_id: str) -> None:
        await self._refresh.update_many({"family_id": family_id}, {"$set": {"revoked": True}})

    async def revoke_user(self, user_id: str) -> None:
        await self._refresh.update_many({"user_id": user_id}, {"$set": {"revoked": True}})

    async def purge_revoked(self, before: datetime) -> int:
        result = await self._refresh.delete_many({"revoked": True, "created_at": {"$lt": before}})
        return result.deleted_count
