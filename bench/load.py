"""A closed-loop HTTP load generator in its own process: N keep-alive connections, each with one
request in flight, for a fixed time.

``await run_load(...)`` (in the benchmark's process, which also serves the app) starts
``python -m bench.load`` as a child process and waits for it without blocking the event loop, so
the app's cost is the app's alone: the generator's CPU is spent in another process. While the child
measures, the parent samples the CPU time (``/proc/<pid>/stat`` utime + stime) of the processes it
was asked to watch — the app's (its own) and the database's — at the moment the child says the
measured window starts and again when it ends.

The child is a small asyncio HTTP/1.1 client on raw sockets (keep-alive, ``Content-Length`` or
chunked bodies), far cheaper per request than a full HTTP client library; it prints ``start`` and
``stop`` around the measured window, then one JSON line with what it saw.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Target:
    """What every request of a measurement is: a GET of ``url`` with ``headers``."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Result:
    label: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    concurrency: int
    cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU ms of each watched process in the window
    sent: int = 0  # every request the generator sent, warm-up included

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

    @property
    def p99(self) -> float:
        return self.pct(0.99)

    def cpu_per_request(self, name: str) -> float:
        """CPU milliseconds of the watched process ``name`` per answered request (errors included)."""
        answered = self.requests + self.errors
        return self.cpu_ms.get(name, float("nan")) / answered if answered else float("nan")


# ---------------------------------------------------------------- CPU time from /proc
def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (a database started through a wrapper counts whole)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` and its descendants (0 for a gone process)."""
    total = 0
    for one in _descendants(pid):
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total / _TICKS


def own_cpu_seconds() -> float:
    """User + system CPU seconds of this process alone (all its threads), not of its children."""
    times = os.times()
    return times.user + times.system


def cpu_snapshot(watch: dict[str, int]) -> dict[str, float]:
    """The CPU seconds of each watched process so far. This process (the one serving the app) counts
    alone: its children are the database and the load generator, which are measured apart or not at
    all, and must not be billed to the app."""
    return {name: own_cpu_seconds() if pid == os.getpid() else cpu_seconds(pid) for name, pid in watch.items()}


# ---------------------------------------------------------------- the parent side
async def run_load(label: str, target: Target, *, concurrency: int, seconds: float, warmup_s: float = 1.0,
                   min_requests: int = 0, watch: dict[str, int] | None = None) -> Result:
    """Keep ``concurrency`` requests in flight for ``seconds`` (after a warm-up), or until at least
    ``min_requests`` answers came back; every non-2xx answer counts as an error. The requests come
    from a child process; ``watch`` names processes (``{"app": pid}``) whose CPU time in the
    measured window goes into ``Result.cpu_ms``."""
    watch = watch or {}
    spec = {"url": target.url, "headers": target.headers, "concurrency": concurrency, "seconds": seconds,
            "warmup_s": warmup_s, "min_requests": min_requests}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.load", json.dumps(spec), cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)}, limit=64 * 1024 * 1024,
    )
    before: dict[str, float] = {}
    after: dict[str, float] = {}
    report = None
    assert child.stdout is not None
    async for raw in child.stdout:
        line = raw.decode().strip()
        if line == "start":
            before = cpu_snapshot(watch)
        elif line == "stop":
            after = cpu_snapshot(watch)
        elif line.startswith("{"):
            report = json.loads(line)
    code = await child.wait()
    if code != 0 or report is None:
        raise RuntimeError(f"the load generator for {label!r} exited with {code}")
    cpu = {name: (after.get(name, 0.0) - before.get(name, 0.0)) * 1000 for name in watch}
    return Result(label, len(report["latencies_ms"]), report["errors"], report["seconds"], report["latencies_ms"], concurrency, cpu, report["sent"])


# ---------------------------------------------------------------- the child: a raw-socket client
class _Connection:
    def __init__(self, host: str, port: int, request: bytes) -> None:
        self.host, self.port, self.request = host, port, request
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def fetch(self) -> int:
        """One request on the kept-alive connection (reopened when the server closed it)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        reader = self.reader
        assert reader is not None
        self.writer.write(self.request)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    break
        elif "content-length" in headers:
            await reader.readexactly(int(headers["content-length"]))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _generate(spec: dict) -> dict:
    parts = urlsplit(spec["url"])
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    # Like a phone's HTTP stack: keep-alive and gzip accepted.
    headers = {"Host": parts.netloc, "Accept-Encoding": "gzip", **spec["headers"]}
    request = (f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
    min_requests = spec["min_requests"]
    connections = [_Connection(parts.hostname, parts.port or 80, request) for _ in range(spec["concurrency"])]

    sent = 0

    async def worker(conn: _Connection, until: float, record: list | None, errors: list) -> None:
        nonlocal sent
        # Past the time, go on until min_requests answers came back (errors count: an answer that
        # always fails, such as an expired token, must end the measurement, not loop forever).
        while time.monotonic() < until or (record is not None and len(record) + len(errors) < min_requests):
            sent += 1
            started = time.perf_counter()
            try:
                status = await conn.fetch()
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                conn.close()
                status = 0
            elapsed = (time.perf_counter() - started) * 1000
            if record is None:
                continue
            if 200 <= status < 300:
                record.append(elapsed)
            else:
                errors.append(status)

    if spec["warmup_s"]:
        await asyncio.gather(*[worker(c, time.monotonic() + spec["warmup_s"], None, []) for c in connections])
    latencies: list[float] = []
    errors: list[int] = []
    print("start", flush=True)
    started = time.monotonic()
    await asyncio.gather(*[worker(c, started + spec["seconds"], latencies, errors) for c in connections])
    elapsed = time.monotonic() - started
    print("stop", flush=True)
    for c in connections:
        c.close()
    return {"latencies_ms": [round(x, 3) for x in latencies], "errors": len(errors), "seconds": elapsed, "sent": sent}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="closed-loop HTTP load: the child side of bench.load.run_load")
    parser.add_argument("spec", help="JSON: url, headers, concurrency, seconds, warmup_s, min_requests")
    spec = json.loads(parser.parse_args(argv).spec)
    print(json.dumps(asyncio.run(_generate(spec))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
