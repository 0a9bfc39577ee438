"""Bounded executors for CPU-heavy work (password hashing, spreadsheet parsing).

Each owner (``Passwords``, ``ImportService``) has its own: a few threads that run nothing else and
a bounded number of jobs waiting for them. When the queue is full the caller is refused at once
(503 ``service.busy`` with ``Retry-After``) instead of piling up work that would slow every other
request. Threads are started on first use and end when their owner is garbage-collected.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from server.errors import ApiError

T = TypeVar("T")
BUSY_RETRY_AFTER_S = 5


def busy() -> ApiError:
    return ApiError(
        "service.busy", 503, params={"retry_after": BUSY_RETRY_AFTER_S}, headers={"Retry-After": str(BUSY_RETRY_AFTER_S)}
    )


class BoundedExecutor:
    def __init__(self, name: str, workers: int, queue: int) -> None:
        self._name = name
        self._workers = workers
        self._capacity = workers + queue  # running + waiting
        self._in_flight = 0
        self._executor: ThreadPoolExecutor | None = None

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on one of this executor's threads; 503 at once when the queue is full."""
        if self._in_flight >= self._capacity:
            raise busy()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix=f"mpcrm-{self._name}")
        self._in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args))
        finally:
            self._in_flight -= 1
