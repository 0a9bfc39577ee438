"""Fixed-window rate limits whose counters live in the database, so they hold across instances."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from pymongo import ReturnDocument

from server.clock import Clock
from server.errors import ApiError


class RateLimiter:
    def __init__(self, rate_limits, clock: Clock, window_s: int = 60) -> None:
        self._col = rate_limits
        self._clock = clock
        self._window = window_s

    async def hit(self, kind: str, key: str, limit: int, window_s: int | None = None) -> None:
        """Count one event; raise 429 with ``Retry-After`` once ``limit`` per window is passed.

        Every attempt counts, refused ones included, so hammering during a refusal gains nothing;
        nothing resets a window before it ends. ``window_s`` defaults to the limiter's window."""
        size = window_s or self._window
        now = self._clock.now()
        window = int(now.timestamp()) // size
        window_end = datetime.fromtimestamp((window + 1) * size, timezone.utc)
        # The expiry sits in the filter: an upsert copies equality fields into the new document.
        doc = await self._col.find_one_and_update(
            {"_id": f"{kind}:{size}:{key}:{window}", "expires_at": window_end + timedelta(seconds=size)},
            {"$inc": {"count": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        if doc["count"] > limit:
            raise too_many(window_end - now)


def too_many(wait: timedelta) -> ApiError:
    retry_after = max(1, int(wait.total_seconds() + 0.999))
    return ApiError("request.rate_limited", 429, params={"retry_after": retry_after}, headers={"Retry-After": str(retry_after)})
