"""Idempotency keys for creating POSTs, for phones that retry on flaky networks.

``begin`` claims ``(scope, key)`` with an insert (the unique ``_id`` decides between racing
requests) and pre-allocates the id of the resource the request will create. The resource itself is
the completion marker: once it exists, a retry with the same body replays (the caller loads it and
answers as the first time, writing nothing), so a successful request costs one extra command, not
two. The same key with another body → 422; while the first request is still running → 409. A claim
whose request died (older than ``stale_after``, resource never written) may be taken over by a
retry. Records expire after ``ttl`` (at least 24 h) through a TTL index.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Awaitable, Callable

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from server.clock import Clock
from server.errors import ApiError, Conflict, Invalid

KEY_RE = re.compile(r"^[A-Za-z0-9_\-:.]{8,128}$")


@dataclass(frozen=True)
class Claim:
    doc_id: str
    resource_id: str
    replay: bool


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


class IdempotencyService:
    def __init__(self, db, clock: Clock, ttl: timedelta = timedelta(hours=48), stale_after: timedelta = timedelta(seconds=30)) -> None:
        self._col = db["idempotency_keys"]
        self._clock = clock
        self._ttl = ttl
        self._stale_after = stale_after

    @staticmethod
    def check_key(key: str) -> str:
        if not KEY_RE.match(key):
            raise ApiError("idempotency.bad_key", 400)
        return key

    async def begin(
        self, scope: str, key: str, fingerprint: str, new_resource_id: str, resource_exists: Callable[[str], Awaitable[bool]]
    ) -> Claim:
        now = self._clock.now()
        doc_id = hashlib.sha256(f"{scope}\n{self.check_key(key)}".encode()).hexdigest()
        try:
            await self._col.insert_one(
                {"_id": doc_id, "fingerprint": fingerprint, "resource_id": new_resource_id, "started_at": now, "expires_at": now + self._ttl}
            )
            return Claim(doc_id, new_resource_id, replay=False)
        except DuplicateKeyError:
            pass
        existing = await self._col.find_one({"_id": doc_id})
        if existing is None:  # expired between the two calls: claim again
            return await self.begin(scope, key, fingerprint, new_resource_id, resource_exists)
        if existing["fingerprint"] != fingerprint:
            raise Invalid("idempotency.key_reused")
        if await resource_exists(existing["resource_id"]):
            return Claim(doc_id, existing["resource_id"], replay=True)
        if existing["started_at"] > now - self._stale_after:
            raise Conflict("idempotency.in_progress", headers={"Retry-After": "2"})
        taken = await self._col.find_one_and_update(
            {"_id": doc_id, "started_at": existing["started_at"]},
            {"$currentDate": {"started_at": True}},
            return_document=ReturnDocument.AFTER,
        )
        if taken is None:
            raise Conflict("idempotency.in_progress", headers={"Retry-After": "2"})
        return Claim(doc_id, existing["resource_id"], replay=False)

    async def abandon(self, claim: Claim) -> None:
        """The request failed: forget the key so a corrected retry can run."""
        await self._col.delete_one({"_id": claim.doc_id})
