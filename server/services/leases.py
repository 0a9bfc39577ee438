"""Leases: one instance at a time runs a given job. A lease is a document with an owner and a
``lease_until``; a crashed holder's lease simply runs out and another instance takes it over.

Taken with a conditional replace-upsert (a replacement, because datetimes must never be written
with ``$set`` — see docs/mongodb-compat.md): the filter matches a free or expired lease (or our own); if
another live holder has it, the upsert collides with the existing ``_id`` and we get
``DuplicateKeyError`` — not ours this time. No TTL index: expiry must be exact, not "within a minute".
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta

from pymongo.errors import DuplicateKeyError

from server.clock import Clock


def instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class LeaseService:
    def __init__(self, leases, clock: Clock, owner: str | None = None) -> None:
        self._col = leases
        self._clock = clock
        self.owner = owner or instance_id()

    async def acquire(self, name: str, ttl_s: float) -> bool:
        now = self._clock.now()
        try:
            result = await self._col.replace_one(
                # One $and, not `_id` beside a top-level $or: nx-27017 drops the `_id` condition of
                # that form and would replace another lease of ours (docs/mongodb-compat.md).
                {"$and": [{"_id": name}, {"$or": [{"lease_until": {"$lt": now}}, {"owner": self.owner}]}]},
                {"_id": name, "owner": self.owner, "lease_until": now + timedelta(seconds=ttl_s), "acquired_at": now},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        return result.matched_count == 1 or result.upserted_id is not None

    async def release(self, name: str) -> None:
        now = self._clock.now()
        await self._col.replace_one(
            {"_id": name, "owner": self.owner}, {"_id": name, "owner": self.owner, "lease_until": now - timedelta(seconds=1), "released_at": now}
        )
