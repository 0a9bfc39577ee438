"""What this instance read of a user for request authentication, trusted for at most a second.

Every authenticated request checks the caller's user document (active, ``token_version``, role),
which costs a database command as large as the request's own read. ``RecentUsers`` keeps the few
fields that check and ``Actor`` need, per user id, for ``ttl_s`` (``MPCRM_AUTH_CACHE_TTL_S``, at
most 1 s) measured from the moment the read was *sent*, so a change committed on another instance
reaches this one within ``ttl_s``. ``UserService`` drops the entry when it writes any of those
fields, so the instance that made the change refuses the user at once; a read that was under way
while an entry was dropped is not kept (``forget`` moves the epoch on).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

# What authentication and Actor.from_user read: nothing personal or secret is kept.
AUTH_FIELDS = ("_id", "role", "active", "token_version", "team_id", "name", "finance")


class RecentUsers:
    MAX_ENTRIES = 10_000

    def __init__(self, ttl_s: float) -> None:
        if not 0 <= ttl_s <= 1.0:
            raise ValueError("a user read may be trusted for at most one second")
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, dict]] = {}  # user id → (read sent at, monotonic; fields)
        self._epoch = 0
        self._reading: dict[str, tuple[int, asyncio.Future]] = {}  # user id → (epoch, read in flight)

    def get(self, user_id: str) -> dict | None:
        entry = self._entries.get(user_id)
        if entry is None:
            return None
        if time.monotonic() - entry[0] >= self.ttl_s:
            del self._entries[user_id]
            return None
        return entry[1]

    async def read(self, user_id: str, load: Callable[[], Awaitable[dict | None]]) -> dict | None:
        """``load()`` (the database read), remembered when it found the user and nothing was
        forgotten while it ran. Requests that miss together share one read (when an entry runs
        out, every request in flight for that user would otherwise read it again), unless
        something was forgotten since that read was sent."""
        shared = self._reading.get(user_id)
        if shared is not None and shared[0] == self._epoch and self.ttl_s > 0:
            return await asyncio.shield(shared[1])
        sent_at, epoch = time.monotonic(), self._epoch
        task = asyncio.ensure_future(load())
        self._reading[user_id] = (epoch, task)
        try:
            doc = await asyncio.shield(task)
        finally:
            if self._reading.get(user_id, (None, None))[1] is task:
                del self._reading[user_id]
        if doc is not None and self.ttl_s > 0 and epoch == self._epoch:
            while len(self._entries) >= self.MAX_ENTRIES:
                del self._entries[next(iter(self._entries))]
            self._entries.pop(user_id, None)  # re-inserted at the end: the oldest go first
            self._entries[user_id] = (sent_at, {k: doc[k] for k in AUTH_FIELDS if k in doc})
        return doc

    def forget(self, user_id: Any) -> None:
        self._epoch += 1
        self._entries.pop(str(user_id), None)
