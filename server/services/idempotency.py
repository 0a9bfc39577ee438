"""Idempotency keys for creating POSTs, for phones that retry on flaky networks.

``run(scope, key, fingerprint, create, load)`` is the whole sequence, the one copy of it: claim
``(scope, key)`` with an insert (the unique ``_id`` decides between racing requests) that
pre-allocates the id of the resource the request will create, create it under that id, and give the
key back when creating fails, so a corrected retry can run. The resource itself is the completion
marker: once it exists, a retry with the same body replays (``load`` reads it back and the caller
answers as the first time, writing nothing), so a successful request costs one extra command, not
two. The same key with another body → 422; while the first request is still running → 409. A claim
whose request died (older than ``stale_after``, resource never written) may be taken over by a
retry. Records expire after ``ttl`` (at least 24 h) through a TTL index.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from server.clock import Clock
from server.errors import ApiError, Conflict, Invalid

KEY_RE = re.compile(r"^[A-Za-z0-9_\-:.]{8,128}$")

T = TypeVar("T")
Create = Callable[[str | None], Awaitable[T]]
Load = Callable[[str], Awaitable[T | None]]


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


def load_existing(exists: Callable[[str], Awaitable[bool]], get: Callable[[str], Awaitable[T]]) -> Load:
    """A ``load`` from an existence check and a reader: None while the resource is not written;
    once it is, whatever ``get`` answers (which may refuse a caller who can no longer see it)."""

    async def load(resource_id: str) -> T | None:
        return await get(resource_id) if await exists(resource_id) else None

    return load


class IdempotencyService:
    def __init__(self, idempotency_keys, clock: Clock, ttl: timedelta = timedelta(hours=48), stale_after: timedelta = timedelta(seconds=30)) -> None:
        self._col = idempotency_keys
        self._clock = clock
        self._ttl = ttl
        self._stale_after = stale_after

    @staticmethod
    def check_key(key: str) -> str:
        if not KEY_RE.match(key):
            raise ApiError("idempotency.bad_key", 400)
        return key

    async def run(self, scope: str, key: str | None, fingerprint: str, create: Create, load: Load, *, resource_id: str | None = None) -> T:
        """Create once per ``(scope, key)``; a retry gets what the first request made.

        ``create(resource_id)`` writes the resource under the id given (None, with no key: the
        service picks one) and returns what the caller answers with; ``load(resource_id)`` returns
        the same for a resource already written, or None while it is not. ``resource_id`` is the
        client's own id, if it sent one. With no key, this is ``create`` alone.
        """
        if key is None:
            return await create(resource_id)
        doc_id = hashlib.sha256(f"{scope}\n{self.check_key(key)}".encode()).hexdigest()
        claimed, done = await self._claim(doc_id, fingerprint, resource_id or str(ObjectId()), load)
        if done is not None:
            return done
        try:
            return await create(claimed)
        except BaseException:
            # The request failed: forget the key so a corrected retry can run.
            await self._col.delete_one({"_id": doc_id})
            raise

    async def _claim(self, doc_id: str, fingerprint: str, new_resource_id: str, load: Load) -> tuple[str, Any]:
        """``(resource_id, None)``: this request creates it; ``(resource_id, loaded)``: a replay."""
        now = self._clock.now()
        try:
            await self._col.insert_one(
                {"_id": doc_id, "fingerprint": fingerprint, "resource_id": new_resource_id, "started_at": now, "expires_at": now + self._ttl}
            )
            return new_resource_id, None
        except DuplicateKeyError:
            pass
        existing = await self._col.find_one({"_id": doc_id})
        if existing is None:  # expired between the two calls: claim again
            return await self._claim(doc_id, fingerprint, new_resource_id, load)
        if existing["fingerprint"] != fingerprint:
            raise Invalid("idempotency.key_reused")
        done = await load(existing["resource_id"])
        if done is not None:
            return existing["resource_id"], done
        if existing["started_at"] > now - self._stale_after:
            raise Conflict("idempotency.in_progress", headers={"Retry-After": "2"})
        taken = await self._col.find_one_and_update(
            {"_id": doc_id, "started_at": existing["started_at"]},
            {"$currentDate": {"started_at": True}},
            return_document=ReturnDocument.AFTER,
        )
        if taken is None:
            raise Conflict("idempotency.in_progress", headers={"Retry-After": "2"})
        return existing["resource_id"], None
