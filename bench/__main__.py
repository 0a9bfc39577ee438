"""``python -m bench`` (``make bench``): measure the API against its embedded database.

1. ``GET /api/v1/leads/{id}`` (authenticated, the real app) against a bare Tornado handler doing the
   same ``find_one`` with the same driver and client, loaded from another process: requests per
   second and their ratio, p50/p99, CPU ms per request of the app's and of the database's process,
   and database commands per request.
2. A rep's first list page (``GET /api/v1/leads?limit=20``) at 10,000 and at 200,000 leads in the
   same database: p50 latency and the ratio p50(200k)/p50(10k).

``BENCH_QUICK=1`` uses 2,000 / 20,000 leads and shorter runs. Results go to docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pymongo
import tornado
import tornado.web
from pymongo.monitoring import CommandListener

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.data import QUICK, add_leads, make_people  # noqa: E402
from bench.env import bench_database, getter, log, serve  # noqa: E402
from bench.load import Result, run_load  # noqa: E402
from server.app import make_app  # noqa: E402

SMALL, LARGE = (2_000, 20_000) if QUICK else (10_000, 200_000)
SECONDS = 2.0 if QUICK else 5.0
TEAMS, REPS_PER_TEAM = 10, 10
GET_CONCURRENCY = 16
GET_ROUNDS = 3
LIST_CONCURRENCY = 8
GOAL_GET_RATIO = 0.8
GOAL_LIST_RATIO = 1.5
COMMAND = "make bench   # = .venv/bin/python -m bench" + ("   (BENCH_QUICK=1)" if QUICK else "")


class BareLeadHandler(tornado.web.RequestHandler):
    """The floor: the same find_one on the same collection with the same client, nothing else."""

    def initialize(self, collection) -> None:
        self.collection = collection

    async def get(self, lead_id: str) -> None:
        doc = await self.collection.find_one({"_id": lead_id})
        if doc is None:
            raise tornado.web.HTTPError(404)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(doc, ensure_ascii=False, default=str))


class CommandCount(CommandListener):
    """Database commands the app's client sent (the bare handler shares it)."""

    def __init__(self) -> None:
        self.count = 0

    def started(self, event) -> None:
        if event.command_name not in ("endSessions", "killCursors", "hello", "isMaster", "ping"):
            self.count += 1

    def succeeded(self, event) -> None:
        pass

    def failed(self, event) -> None:
        pass


async def measure_get(app_url: str, bare_url: str, lead_id: str, token: str, watch: dict[str, int], counter: CommandCount) -> dict:
    """The app's ``GET /leads/{id}`` and the bare handler, in GET_ROUNDS interleaved rounds; per
    side the round with the median throughput, and the database commands per request.

    ``BENCH_PROFILE=<file>``: cProfile runs in this (the app's) process during the rounds, and its
    statistics go to ``<file>.app`` and ``<file>.bare`` (read with ``python -m pstats``); the CPU
    figures of such a run include the profiler's own cost."""
    cases = {
        "app": ("app GET /api/v1/leads/{id}", getter(f"{app_url}/api/v1/leads/{lead_id}", token)),
        "bare": ("bare find_one handler", getter(f"{bare_url}/leads/{lead_id}")),
    }
    profile_path = os.environ.get("BENCH_PROFILE")
    profilers = {name: cProfile.Profile() for name in cases} if profile_path else {}
    rounds: dict[str, list[Result]] = {name: [] for name in cases}
    commands: dict[str, float] = {}
    for n in range(GET_ROUNDS):
        for name, (label, target) in cases.items():
            before = counter.count
            if profilers:
                profilers[name].enable()
            result = await run_load(label, target, concurrency=GET_CONCURRENCY, seconds=SECONDS, watch=watch)
            if profilers:
                profilers[name].disable()
            commands[name] = (counter.count - before) / max(1, result.sent)
            rounds[name].append(result)
            log(f"  round {n + 1}: {label}: {result.rps:.0f} req/s, p50 {result.p50:.1f} ms, p99 {result.p99:.1f} ms, "
                f"CPU per request app {result.cpu_per_request('app'):.2f} ms, db {result.cpu_per_request('db'):.2f} ms, "
                f"{commands[name]:.2f} commands, {result.errors} errors")
    for name, profiler in profilers.items():
        profiler.dump_stats(f"{profile_path}.{name}")
        log(f"  profile of the {name} rounds written to {profile_path}.{name}")
    picked = {name: sorted(results, key=lambda r: r.rps)[len(results) // 2] for name, results in rounds.items()}
    return {"app": picked["app"], "bare": picked["bare"], "commands": commands, "rounds": rounds}


async def measure(tmp: Path, get_only: bool = False) -> dict:
    counter = CommandCount()
    async with bench_database(tmp, "bench", listeners=[counter]) as bench:
        ctx, setup_db = bench
        app_server, app_url = serve(make_app(ctx))
        bare_server, bare_url = serve(tornado.web.Application([(r"/leads/([^/]+)", BareLeadHandler, {"collection": ctx.database.db["leads"]})]))
        watch = {"app": os.getpid(), "db": bench.db_pid}
        rng = random.Random(20261122)

        t0 = time.monotonic()
        reps = await make_people(ctx, TEAMS, REPS_PER_TEAM)
        rep = reps[0]
        token = (await ctx.auth.issue_tokens(rep))["access_token"]
        await add_leads(setup_db, reps, SMALL, rng)
        log(f"setup: {len(reps)} reps in {TEAMS} teams, {SMALL:,} leads in {time.monotonic() - t0:.1f} s")
        lead = await ctx.database.db["leads"].find_one({"owner_id": str(rep["_id"])}, {"_id": 1})
        lead_id = lead["_id"]

        # 1. one lead by id: the real app vs the bare handler, load from another process
        get = await measure_get(app_url, bare_url, lead_id, token, watch, counter)
        app_get, bare_get = get["app"], get["bare"]
        log(f"get: app {app_get.rps:.0f} req/s, bare {bare_get.rps:.0f} req/s")
        if get_only:
            app_server.stop()
            bare_server.stop()
            return {"get": (app_get, bare_get), "get_commands": get["commands"], "get_rounds": get["rounds"]}

        # 2. the rep's first list page at SMALL, then at LARGE leads
        list_url = f"{app_url}/api/v1/leads?limit=20"
        seq_small = await run_load("list 1 in flight", getter(list_url, token), concurrency=1, seconds=SECONDS / 2, warmup_s=0.5, min_requests=10)
        list_small = await run_load(f"list @ {SMALL:,}", getter(list_url, token), concurrency=LIST_CONCURRENCY, seconds=SECONDS, min_requests=20)
        log(f"list @ {SMALL:,}: p50 {list_small.p50:.1f} ms (1 in flight: {seq_small.p50:.1f} ms)")
        t0 = time.monotonic()
        await add_leads(setup_db, reps, LARGE - SMALL, rng)
        insert_s = time.monotonic() - t0
        total = await setup_db["leads"].count_documents({})
        log(f"setup: now {total:,} leads (+{LARGE - SMALL:,} in {insert_s:.1f} s)")
        seq_large = await run_load("list 1 in flight", getter(list_url, token), concurrency=1, seconds=SECONDS / 2, warmup_s=0.5, min_requests=10)
        list_large = await run_load(f"list @ {LARGE:,}", getter(list_url, token), concurrency=LIST_CONCURRENCY, seconds=SECONDS, min_requests=20)
        log(f"list @ {LARGE:,}: p50 {list_large.p50:.1f} ms (1 in flight: {seq_large.p50:.1f} ms)")
        rep_leads = await setup_db["leads"].count_documents({"owner_id": str(rep["_id"])})
        app_server.stop()
        bare_server.stop()
    return {
        "get": (app_get, bare_get),
        "get_commands": get["commands"],
        "get_rounds": get["rounds"],
        "list": (list_small, list_large),
        "list_seq": (seq_small, seq_large),
        "total": total,
        "rep_leads_large": rep_leads,
    }


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def get_table(figures: dict) -> str:
    """The lead read, app against bare: every round, then the median rounds and their ratio."""
    commands = figures["get_commands"]

    def row(name: str, r: Result, label: str | None = None) -> str:
        return (f"| {label or r.label} | {r.requests} | {r.errors} | {r.rps:,.0f} | {r.p50:.1f} | {r.p99:.1f} | "
                f"{r.cpu_per_request('app'):.2f} | {r.cpu_per_request('db'):.2f} | {commands[name]:.2f} |")

    lines = [
        "| measurement | requests | errors | req/s | p50 ms | p99 ms | app CPU ms/req | DB CPU ms/req | DB commands/req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in range(GET_ROUNDS):
        for name in ("app", "bare"):
            lines.append(row(name, figures["get_rounds"][name][n], f"{figures['get_rounds'][name][n].label}, round {n + 1}"))
    app_get, bare_get = figures["get"]
    lines.append(row("app", app_get, "**app, median round**"))
    lines.append(row("bare", bare_get, "**bare, median round**"))
    return "\n".join(lines)


def round_ratios(figures: dict) -> list[float]:
    """App / bare throughput of each round (the app's measurement against the bare one right after
    it): pairs taken close together, so a change in the machine's load between rounds moves both."""
    rounds = figures["get_rounds"]
    return [a.rps / b.rps if b.rps else 0.0 for a, b in zip(rounds["app"], rounds["bare"])]


def get_ratio_text(figures: dict) -> tuple[float, str]:
    """The goal's figure, the median of the rounds' ratios, and the rounds' ratios in words."""
    ratios = round_ratios(figures)
    return statistics.median(ratios), ", ".join(f"{r:.2f}" for r in ratios)


def report(figures: dict) -> tuple[str, str]:
    app_get, bare_get = figures["get"]
    small, large = figures["list"]
    seq_small, seq_large = figures["list_seq"]
    get_ratio, each_round = get_ratio_text(figures)
    list_ratio = large.p50 / small.p50 if small.p50 else float("inf")
    seq_ratio = seq_large.p50 / seq_small.p50 if seq_small.p50 else float("inf")

    def row(r: Result) -> str:
        return f"| {r.label} | {r.concurrency} | {r.requests} | {r.errors} | {r.rps:,.0f} | {r.p50:.1f} | {r.pct(0.95):.1f} | {r.p99:.1f} |"

    table = "\n".join([
        "| measurement | in flight | requests | errors | req/s | p50 ms | p95 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        row(small), row(large),
        row(Result(f"list @ {SMALL:,}, 1 in flight", seq_small.requests, seq_small.errors, seq_small.seconds, seq_small.latencies_ms, 1)),
        row(Result(f"list @ {LARGE:,}, 1 in flight", seq_large.requests, seq_large.errors, seq_large.seconds, seq_large.latencies_ms, 1)),
    ])
    cpu_ratio = app_get.cpu_per_request("app") / bare_get.cpu_per_request("app") if bare_get.cpu_per_request("app") else float("inf")
    summary = "\n".join([
        "| goal | target | measured | |",
        "|---|---|---:|---|",
        f"| app / bare throughput, `GET /api/v1/leads/{{id}}`, median of the rounds ({each_round}) | ≥ {GOAL_GET_RATIO} | {get_ratio:.2f} | {verdict(get_ratio >= GOAL_GET_RATIO)} |",
        f"| same, app-process CPU per request, app / bare (for reference) | | {cpu_ratio:.2f} | |",
        f"| p50 first list page, {LARGE // 1000}k / {SMALL // 1000}k leads ({LIST_CONCURRENCY} in flight) | ≤ {GOAL_LIST_RATIO} | {list_ratio:.2f} | {verdict(list_ratio <= GOAL_LIST_RATIO)} |",
        f"| same, 1 in flight (for reference) | ≤ {GOAL_LIST_RATIO} | {seq_ratio:.2f} | {verdict(seq_ratio <= GOAL_LIST_RATIO)} |",
    ])
    return table, summary


KEPT_HEADING = "## Earlier runs"


def kept_runs(path: Path) -> str:
    """The hand-kept record of earlier runs at the end of the document, which a new run keeps."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    at = text.find("\n" + KEPT_HEADING)
    return text[at + 1:] if at >= 0 else ""


def write_doc(table: str, summary: str, figures: dict, seconds_total: float, sections: list[str]) -> Path:
    path = ROOT / "docs" / "benchmarks.md"
    kept = kept_runs(path)
    nx_version = "0.8.1"
    try:
        from importlib.metadata import version

        nx_version = version("nx-27017")
    except Exception:  # pragma: no cover
        pass
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = f"""# Benchmarks

Measured {when} with `{COMMAND}` (the whole run took {seconds_total:.0f} s).
Machine: 2 cores (`nproc` = {os.cpu_count()}), {platform.python_implementation()} {platform.python_version()},
nx-27017 {nx_version} (embedded, SQLite), PyMongo {pymongo.version}, Tornado {tornado.version}.
Three processes: the database (nx-27017), the benchmark's own process, which serves the app on one
port (with the app's production JSON access log, to a file) and a bare Tornado handler on another
(no log line), and the load generator (`bench/load.py`, started as a child process for each
measurement: asyncio on raw sockets, HTTP/1.1 keep-alive, gzip accepted like a phone, closed loop
with a fixed number of requests in flight, {SECONDS:.0f} s per measurement after a 1 s warm-up). CPU
per request is the user + system time of the app's process alone (not of its children, the
database and the load generator) and of the database's process (`/proc/<pid>/stat`) over the
measured window, divided by the answers. `BENCH_QUICK=1` uses {2_000:,} / {20_000:,} leads.
Sizes this run: {SMALL:,} and {LARGE:,} leads spread at random over {TEAMS * REPS_PER_TEAM} reps in
{TEAMS} teams (the measured rep owns {figures['rep_leads_large']:,} leads at {LARGE:,}).

## Goals
{summary}

## `GET /api/v1/leads/{{id}}`: the app against a bare handler
{GET_CONCURRENCY} requests in flight; {GET_ROUNDS} rounds, app and bare interleaved; the goal is the median of the
rounds' app / bare ratios (each app round against the bare round right after it), and the median
rows are each side's round with the median throughput. The bare handler shares the app's process,
database and `AsyncMongoClient`.

{get_table(figures)}

## A rep's first list page at {SMALL:,} and {LARGE:,} leads
{table}

What is measured:
1. **`GET /api/v1/leads/{{id}}`**, authenticated as the owning rep, through the whole app (request id,
   JWT check, the user check that honours deactivation, the scoped `find_one`, `LeadDetailOut`
   validation, JSON, access log and metrics) against a bare `RequestHandler` that does the
   same `find_one({{"_id": id}})` on the same collection with the same `AsyncMongoClient`. Neither
   compresses this answer: the lead is under Tornado's 1 KiB gzip threshold (the app's
   `compress_response` gzips longer answers such as list pages), and the bare server has none.
2. **A rep's first list page**, `GET /api/v1/leads?limit=20` (`owner_id = me`, sorted by
   `updated_ms` — the activity time as a number — then `_id`, descending), at {SMALL:,} leads and again after bulk-inserting up to
   {LARGE:,} leads in the same database.

## Reading the results
- **Throughput ratio.** The app's own cost of a lead read was found by profiling it under this
  load (cProfile in the app's process; see "Earlier runs"): the per-request user read (a second
  database command, and the driver's CPU for it), PyJWT's parse and signature check (its base64
  check walks the token character by character, twice), and the access log's secret-masking
  regular expressions. Each instance now trusts the user it read for a request for at most
  `MPCRM_AUTH_CACHE_TTL_S` (1 s; only the fields the check needs), so a busy user's reads send one
  command like the bare handler; the write that deactivates a user or changes their role, team or
  password forgets them on its instance (refused at once there) and other instances refuse them
  within the second. A verified token is remembered by its exact text with its validity window
  (expiry still enforced; any other text is verified in full). The log masking skips a pattern
  when the line holds none of its words. A second profile (the app's rounds against the bare
  handler's, calls per request compared) then removed: Tornado's ETag (a SHA-1 of every GET's
  body, pointless on `no-store` answers), the three-step `model_dump` + `json.dumps` (now
  `model_dump_json`), the phone pattern's scan of every log line (9.9 µs → 1.9 µs: it now opens
  with a literal), the caller lookup `logging` does for every record (file, line, thread and
  process, none of which a JSON line prints), `.labels()` on every request, `uuid4()` for the
  request id, an extra coroutine around each operation and each read-only `find_one`, and the
  body machinery for requests without a body (figures in "Earlier runs"). What remains is the
  app's real work: the access log line (the largest piece), the token and user check,
  `LeadDetailOut` validation and JSON, routing through the route table, the request id and
  headers; and in the database, the scoped filter (`_id` and `owner_id`: nx-27017 spends about
  0.1 ms more on it than on `_id` alone).
- **List latency vs size.** On nx-27017 a compound index does not serve a sort
  (docs/mongodb-compat.md): `find({{owner_id}}).sort(updated_ms, _id)` reads and sorts the rep's
  leads (or scans the collection), so it grows with the data. On a real MongoDB the declared index
  `{{owner_id: 1, updated_ms: -1}}` serves the page directly and the ratio stays near 1. Equality on
  a single indexed field and sorting by `_id` stay flat on nx-27017; if the stand-in must meet the
  goal, the hot list could sort by `_id` (ObjectIds are time-ordered: "newest first" instead of
  "latest activity first"), a product change to discuss rather than something done for a benchmark.
"""
    text += "".join(sections)
    if kept:
        text += "\n" + kept
    path.write_text(text, encoding="utf-8")
    return path


def main(argv: list[str]) -> int:
    """``python -m bench``: every section, written to docs/benchmarks.md. ``python -m bench get``:
    only the lead read against the bare handler, printed (the document is left as it is)."""
    if argv not in ([], ["get"]):
        print("usage: python -m bench [get]", file=sys.stderr)
        return 2
    get_only = argv == ["get"]
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="mpcrm-bench-"))
    try:
        log(f"mpcrm benchmark ({'quick' if QUICK else 'full'}{', lead read only' if get_only else ''}): "
            f"{SMALL:,} → {LARGE:,} leads, data in {tmp}")
        figures = asyncio.run(measure(tmp, get_only))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if get_only:
        app_get, bare_get = figures["get"]
        print()
        print(get_table(figures))
        ratio, each_round = get_ratio_text(figures)
        app_cpu, bare_cpu = app_get.cpu_per_request("app"), bare_get.cpu_per_request("app")
        print(f"\napp / bare throughput, median of the rounds ({each_round}): {ratio:.2f} "
              f"(goal ≥ {GOAL_GET_RATIO}: {verdict(ratio >= GOAL_GET_RATIO)}); "
              f"app-process CPU per request {app_cpu:.2f} / {bare_cpu:.2f} ms; {time.monotonic() - started:.0f} s")
        return 0
    table, summary = report(figures)
    print()
    print(get_table(figures))
    print()
    print(table)
    print()
    print(summary)
    from bench.allocation import run_section as allocation_section  # noqa: E402 - the allocation section
    from bench.reports import run_section as reports_section  # noqa: E402 - the reports section

    sections = [allocation_section(), reports_section()]
    path = write_doc(table, summary, figures, time.monotonic() - started, sections)
    print(f"\nwritten to {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
