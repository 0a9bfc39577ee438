"""Allocation benchmark: 10,000 waiting leads over 50 reps (BENCH_QUICK=1: 2,000), one
round-robin rule per team of 10 reps, allocated by the ``allocate_new_leads`` sweep. Reports leads
per second and DB commands per lead (a pymongo CommandListener on the bench's client), appended to
docs/benchmarks.md."""

from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bson import ObjectId
from pymongo.monitoring import CommandListener

from bench.data import ADMIN, QUICK
from bench.env import bench_database
from server.schemas.allocation import RuleCreate
from server.schemas.users import TeamCreate, UserCreate

LEADS = 2_000 if QUICK else 10_000
REPS, TEAMS = 50, 5


class Counter(CommandListener):
    def __init__(self) -> None:
        self.count = 0

    def started(self, event) -> None:
        if event.command_name not in ("endSessions", "killCursors", "hello", "isMaster"):
            self.count += 1

    def succeeded(self, event) -> None:
        pass

    def failed(self, event) -> None:
        pass


async def _measure(tmp: Path) -> dict:
    counter = Counter()
    async with bench_database(tmp, "bench_alloc", timeout_ms=120_000, listeners=[counter]) as (ctx, setup):
        teams = []
        for t in range(TEAMS):
            team = await ctx.users.create_team(ADMIN, TeamCreate(name=f"bench-team-{t}"))
            members = []
            for r in range(REPS // TEAMS):
                user = await ctx.users.create_user(ADMIN, UserCreate.model_validate(
                    {"username": f"b{t}-{r}", "password": "bench-password-1", "name": f"rep {t}-{r}", "role": "rep", "team_id": str(team["_id"]), "capacity": 100_000}))
                members.append(str(user["_id"]))
            await ctx.allocation.create_rule(ADMIN, RuleCreate.model_validate(
                {"name": f"rule {t}", "team_id": str(team["_id"]), "strategy": "round_robin", "members": members}))
            teams.append(str(team["_id"]))
        start = datetime.now(timezone.utc)
        docs: list[dict[str, Any]] = [{"_id": str(ObjectId()), "name": f"lead {i}", "tags": [], "stage": "new", "owner_id": None, "team_id": teams[i % TEAMS],
                 "source": {"kind": "form", "form_slug": "bench"}, "pool": False, "awaiting_allocation": True, "version": 1,
                 "created_at": start + timedelta(milliseconds=i), "updated_at": start} for i in range(LEADS)]
        await setup["leads"].insert_many(docs)
        before = counter.count
        t0 = time.monotonic()
        stats = await ctx.allocation.sweep(datetime.now(timezone.utc))
        seconds = time.monotonic() - t0
        commands = counter.count - before
        per_rep = [d.get("open_leads", 0) async for d in setup["users"].find({"role": "rep"}, {"open_leads": 1})]
    return {"stats": stats, "seconds": seconds, "commands": commands, "spread": max(per_rep) - min(per_rep)}


def run_and_append(path: Path) -> None:
    """Measure, print and append the allocation section to docs/benchmarks.md."""
    section = run_section()
    with open(path, "a", encoding="utf-8") as out:
        out.write(section)


def run_section() -> str:
    """Measure and print the allocation section; returns its text for docs/benchmarks.md."""
    print(f"allocation: {LEADS:,} waiting leads over {REPS} reps ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="mpcrm-bench-alloc-") as tmp:
        f = asyncio.run(_measure(Path(tmp)))
    assigned = f["stats"]["assigned"]
    rate = assigned / f["seconds"] if f["seconds"] else 0.0
    per_lead = f["commands"] / assigned if assigned else float("inf")
    section = f"""
## Allocation: {LEADS:,} waiting leads over {REPS} reps
One `allocate_new_leads` sweep (`AllocationService.sweep`, batches of 500), {TEAMS} teams of {REPS // TEAMS} reps, one
round-robin rule per team; leads inserted in bulk beforehand. Commands counted with a pymongo
`CommandListener` on the app's client (every command the sweep sent, including event, notification
and counter writes).

| leads | assigned | seconds | leads/s | DB commands | commands per lead (budget ≤ 4) | per-rep spread |
|---:|---:|---:|---:|---:|---:|---:|
| {LEADS:,} | {assigned:,} | {f['seconds']:.1f} | {rate:,.0f} | {f['commands']:,} | {per_lead:.2f} ({'met' if per_lead <= 4 else '**missed**'}) | {f['spread']} |
"""
    print(section, flush=True)
    return section
