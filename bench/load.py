"""A small closed-loop HTTP load generator: N requests in flight for a fixed time."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from typing import Callable

from tornado.httpclient import AsyncHTTPClient, HTTPRequest


@dataclass
class Result:
    label: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    concurrency: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")


async def run_load(label: str, make_request: Callable[[int], HTTPRequest], *, concurrency: int, seconds: float,
                   warmup_s: float = 1.0, min_requests: int = 0) -> Result:
    """Keep ``concurrency`` requests in flight for ``seconds`` (after a warm-up), or until at least
    ``min_requests`` have completed; every non-2xx answer counts as an error."""
    client = AsyncHTTPClient(force_instance=True, max_clients=concurrency * 2)
    counter = 0

    async def worker(until: float, record: list | None, errors: list) -> None:
        nonlocal counter
        # Past the time, go on until min_requests answers came back (errors count: an answer that
        # always fails, such as an expired token, must end the measurement, not loop forever).
        while time.monotonic() < until or (record is not None and len(record) + len(errors) < min_requests):
            counter += 1
            request = make_request(counter)
            started = time.perf_counter()
            response = await client.fetch(request, raise_error=False)
            elapsed = (time.perf_counter() - started) * 1000
            if record is None:
                continue
            if 200 <= response.code < 300:
                record.append(elapsed)
            else:
                errors.append(response.code)

    try:
        if warmup_s:
            await asyncio.gather(*[worker(time.monotonic() + warmup_s, None, []) for _ in range(concurrency)])
        latencies: list[float] = []
        errors: list[int] = []
        started = time.monotonic()
        await asyncio.gather(*[worker(started + seconds, latencies, errors) for _ in range(concurrency)])
        elapsed = time.monotonic() - started
    finally:
        client.close()
    return Result(label, len(latencies), len(errors), elapsed, latencies, concurrency)
