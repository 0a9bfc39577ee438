"""Reports benchmark: each report's p50 latency at 10,000 and at 500,000 leads in one run
(``BENCH_QUICK=1``: 2,000 and 20,000), appended to docs/benchmarks.md.

Leads are bulk-inserted over the last year with their timeline events (created, a stage move for
leads past ``new``, a follow-up for some), then ``StatsService.rebuild`` makes the counters (the same
code as ``python -m server rebuild-stats``). The fold job's own throughput is measured on a batch of
fresh events at the end. Reports are read as a team's manager (and the reps report as an admin, all
100 reps), for the last 7 and the last 30 days.
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from bson import ObjectId

from bench.data import ADMIN, QUICK, lead_doc, make_people
from bench.env import bench_database, getter, log, serve
from bench.load import Result, run_load
from server.app import make_app
from server.schemas.users import UserCreate

SMALL, LARGE = (2_000, 20_000) if QUICK else (10_000, int(os.environ.get("BENCH_REPORTS_LARGE", "500000")))
SECONDS = 2.0 if QUICK else 4.0
ROUNDS = 3
TEAMS, REPS_PER_TEAM = 10, 10
CONCURRENCY = 4
GOAL_RATIO = 1.2
FOLD_EVENTS = 2_000
OVERDUE_SHARE = 0.01
CONTRACT_SHARE = 0.05  # leads with a signed contract (half of it paid), for the revenue and retention reports


def contract_for(lead: dict, rng: random.Random, now: datetime) -> tuple[dict, list[dict]]:
    """A signed contract of ``lead`` with one of its two instalments paid, and its timeline events."""
    signed = min(lead["created_at"] + timedelta(days=rng.randint(1, 30)), now)
    start = signed.astimezone(timezone(timedelta(hours=8))).date()
    amount = rng.randint(10, 500) * 10_000
    half = amount // 2
    received = min(signed + timedelta(days=rng.randint(0, 60)), now)
    cid = str(ObjectId())
    facts = {"team_id": lead["team_id"], "owner_id": lead["owner_id"], "source": "manual", "channel": None, "campaign": rng.choice([None, "展会", "双11"])}
    plan = [{"no": 1, "due_date": start.isoformat(), "amount_fen": half, "paid_fen": half},
            {"no": 2, "due_date": (start + timedelta(days=90)).isoformat(), "amount_fen": amount - half, "paid_fen": 0}]
    doc = {"_id": cid, "lead_id": lead["_id"], "owner_id": lead["owner_id"], "team_id": lead["team_id"], "title": "服务合同", "amount_fen": amount,
           "start_date": start.isoformat(), "end_date": (start + timedelta(days=364)).isoformat(), "status": "active", "renews": None,
           "payment_plan": plan, "next_due": plan[1]["due_date"], "paid": False, "activated_at": signed, "version": 1,
           "payments": [{"id": str(ObjectId()), "amount_fen": half, "received_at": received}], "payment_ids": []}
    events = [
        {"_id": ObjectId(), "lead_id": lead["_id"], "kind": "contract_signed", "at": signed, "actor_id": None, "actor_role": "manager",
         "data": {"contract_id": cid, "amount_fen": amount, "sale": "new", **facts}},
        {"_id": ObjectId(), "lead_id": lead["_id"], "kind": "payment_recorded", "at": received, "actor_id": None, "actor_role": "manager",
         "data": {"contract_id": cid, "amount_fen": half, "received_at": received.isoformat(), **facts}},
    ]
    return doc, events


def events_for(lead: dict, rng: random.Random) -> list[dict]:
    at = lead["created_at"]
    owner = lead["owner_id"]
    out = [{"_id": ObjectId(), "lead_id": lead["_id"], "kind": "created", "at": at, "actor_id": owner, "actor_role": "rep", "data": {"source": "manual"}}]
    if rng.random() < 0.4:
        out.append({"_id": ObjectId(), "lead_id": lead["_id"], "kind": "followup", "at": at + timedelta(minutes=rng.randint(1, 3000)),
                    "actor_id": owner, "actor_role": "rep", "data": {"kind": rng.choice(["call", "visit", "wechat"])}})
    if lead["stage"] != "new":
        out.append({"_id": ObjectId(), "lead_id": lead["_id"], "kind": "stage_changed", "at": lead["updated_at"], "actor_id": owner,
                    "actor_role": "rep", "data": {"from": "new", "to": lead["stage"], "reason": None}})
    return out


async def add(db, reps: list[dict], count: int, rng: random.Random, chunk: int = 5000) -> None:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    left = count
    while left > 0:
        size = min(chunk, left)
        leads = [lead_doc(rng, rng.choice(reps), now) for _ in range(size)]
        await db["leads"].insert_many(leads, ordered=False)
        await db["lead_events"].insert_many([e for lead in leads for e in events_for(lead, rng)], ordered=False)
        # One open task in a hundred leads is overdue (up to three weeks late).
        tasks = [
            {"_id": str(ObjectId()), "title": "回访", "kind": "manual", "status": "open", "lead_id": lead["_id"], "assignee_id": lead["owner_id"],
             "team_id": lead["team_id"], "due_at": now - timedelta(hours=rng.randint(1, 500)), "created_at": now, "updated_at": now, "version": 1}
            for lead in leads if rng.random() < OVERDUE_SHARE
        ]
        if tasks:
            await db["tasks"].insert_many(tasks, ordered=False)
        money = [contract_for(lead, rng, now) for lead in leads if rng.random() < CONTRACT_SHARE]
        if money:
            await db["contracts"].insert_many([c for c, _ in money], ordered=False)
            await db["lead_events"].insert_many([e for _, events in money for e in events], ordered=False)
        left -= size


async def measure_reports(base: str, manager_token: str, admin_token: str, size: int) -> dict[str, Result]:
    today = datetime.now(timezone.utc).astimezone(timezone(timedelta(hours=8))).date()
    week = f"from={(today - timedelta(days=6)).isoformat()}&to={today.isoformat()}"
    month = f"from={(today - timedelta(days=29)).isoformat()}&to={today.isoformat()}"
    cases = [
        ("funnel, 30 days (manager)", f"/api/v1/reports/funnel?{month}", manager_token),
        ("reps, 7 days (manager, 10 reps)", f"/api/v1/reports/reps?{week}", manager_token),
        ("reps, 30 days (admin, 100 reps)", f"/api/v1/reports/reps?{month}", admin_token),
        ("lifecycle, 30 days (manager)", f"/api/v1/reports/lifecycle?{month}", manager_token),
        ("rfm (manager)", "/api/v1/reports/rfm", manager_token),
        ("revenue by rep, 30 days (manager)", f"/api/v1/reports/revenue?{month}&group_by=rep", manager_token),
        ("revenue by campaign, 30 days (admin)", f"/api/v1/reports/revenue?{month}&group_by=campaign", admin_token),
        ("retention, 30 days (manager)", f"/api/v1/reports/retention?{month}", manager_token),
    ]
    # Rounds over all the reports, interleaved, and the median round per report: a few milliseconds
    # of background work in the database (after a bulk load, say) then moves one round, not the figure.
    rounds: dict[str, list[Result]] = {label: [] for label, _, _ in cases}
    for n in range(ROUNDS):
        for label, path, token in cases:
            result = await run_load(f"{label} @ {size:,}", getter(base + path, token), concurrency=CONCURRENCY, seconds=SECONDS, warmup_s=0.5, min_requests=20)
            rounds[label].append(result)
            log(f"  round {n + 1}: {label} @ {size:,}: p50 {result.p50:.1f} ms, {result.errors} errors")
    return {label: sorted(results, key=lambda r: r.p50)[len(results) // 2] for label, results in rounds.items()}


async def _measure(tmp: Path) -> dict:
    async with bench_database(tmp, "bench_reports", timeout_ms=600_000) as (ctx, setup):
        rng = random.Random(8)
        reps = await make_people(ctx, TEAMS, REPS_PER_TEAM)
        manager = await ctx.users.create_user(ADMIN, UserCreate(username="bench-manager", password="bench password 123", name="经理", role="manager", team_id=reps[0]["team_id"]))
        admin = await ctx.users.create_user(ADMIN, UserCreate(username="bench-admin", password="bench password 123", name="管理员", role="admin"))
        server, base = serve(make_app(ctx))
        figures: dict = {"rebuild": {}}
        results = {}
        for size, extra in ((SMALL, SMALL), (LARGE, LARGE - SMALL)):
            t0 = time.monotonic()
            await add(setup, reps, extra, rng)
            inserted = time.monotonic() - t0
            t0 = time.monotonic()
            rebuilt = await ctx.stats.rebuild(datetime.now(timezone.utc))
            await ctx.rfm.compute(datetime.now(timezone.utc))
            await ctx.stats.count_overdue(datetime.now(timezone.utc))
            await ctx.stats.count_money(datetime.now(timezone.utc))
            figures["rebuild"][size] = (time.monotonic() - t0, rebuilt)
            log(f"reports @ {size:,} leads: inserted in {inserted:.1f} s; rebuild-stats {figures['rebuild'][size][0]:.1f} s {rebuilt}")
            # Fresh tokens: access tokens last 15 minutes, less than the set-up at full size.
            manager_token = (await ctx.auth.issue_tokens(manager))["access_token"]
            admin_token = (await ctx.auth.issue_tokens(admin))["access_token"]
            results[size] = await measure_reports(base, manager_token, admin_token, size)
        # The fold itself: fresh events on existing leads, folded by the job's code.
        leads = await setup["leads"].find({}, {"_id": 1, "owner_id": 1}).limit(FOLD_EVENTS).to_list(None)
        now = datetime.now(timezone.utc)
        await setup["lead_events"].insert_many([
            {"_id": ObjectId(), "lead_id": d["_id"], "kind": "followup", "at": now, "actor_id": d["owner_id"], "actor_role": "rep", "data": {"kind": "call"}}
            for d in leads
        ])
        t0 = time.monotonic()
        folded = await ctx.stats.fold(now, max_batches=100)
        figures["fold"] = (folded, time.monotonic() - t0)
        log(f"fold: {folded} in {figures['fold'][1]:.2f} s")
        server.stop()
    figures["results"] = results
    return figures


def run_and_append(path: Path) -> None:
    """Measure, print and append the reports section to docs/benchmarks.md."""
    section = run_section()
    with open(path, "a", encoding="utf-8") as out:
        out.write(section)


def run_section() -> str:
    """Measure and print the reports section; returns its text for docs/benchmarks.md."""
    log(f"reports: {SMALL:,} → {LARGE:,} leads ...")
    with tempfile.TemporaryDirectory(prefix="mpcrm-bench-reports-") as tmp:
        f = asyncio.run(_measure(Path(tmp)))
    small, large = f["results"][SMALL], f["results"][LARGE]
    rows = []
    for label in small:
        a, b = small[label], large[label]
        ratio = b.p50 / a.p50 if a.p50 else float("inf")
        rows.append(f"| {label} | {a.p50:.1f} | {b.p50:.1f} | {ratio:.2f} ({'met' if ratio <= GOAL_RATIO else '**missed**'}) | {a.errors + b.errors} |")
    folded, fold_s = f["fold"]
    rebuild_rows = "\n".join(
        f"| {size:,} | {r['events']:,} | {r['cum_docs']:,} | {secs:.1f} |" for size, (secs, r) in f["rebuild"].items()
    )
    section = f"""
## Reports: p50 latency at {SMALL:,} and at {LARGE:,} leads
`bench/reports.py`{' (BENCH_QUICK=1)' if QUICK else ''}, measured {date.today().isoformat()}. {TEAMS} teams × {REPS_PER_TEAM} reps; leads
bulk-inserted over the last year with their timeline events (created; a stage move for leads past
`new`; a follow-up for 40 %), counters made by `StatsService.rebuild` (= `python -m server
rebuild-stats`), RFM by the `rfm_layers` code; an overdue open task for 1 % of leads, counted by the
`count_overdue_tasks` code; a signed contract (half paid, with its `contract_signed` and
`payment_recorded` events) for {CONTRACT_SHARE:.0%} of leads, outstanding money and cohorts counted by
the `count_money` code. {CONCURRENCY} requests in flight, {SECONDS:.0f} s per measurement; each report is
measured in {ROUNDS} rounds interleaved with the others, and the table gives the round with the median p50.
Every report reads at most three running-total documents of `stats_cum` by `_id` (the head, the
day before `from`, the day `to`) plus the stage populations, or the staff list and one document of
overdue-task counts, so neither the
number of leads nor the length of the period changes what is read; the company-wide document
carries one set of counters per rep ({TEAMS * REPS_PER_TEAM} reps here).

| report | p50 ms @ {SMALL:,} | p50 ms @ {LARGE:,} | ratio (goal ≤ {GOAL_RATIO}) | errors |
|---|---:|---:|---:|---:|
""" + "\n".join(rows) + f"""

| leads | events replayed by rebuild-stats | stats_cum documents | rebuild + RFM seconds |
|---:|---:|---:|---:|
{rebuild_rows}

Fold job throughput: {folded['events']:,} fresh follow-up events in {folded['batches']} batches folded in
{fold_s:.2f} s ({folded['events'] / fold_s if fold_s else 0:,.0f} events/s) — far above the event rate of any sales team, so the
counters stay within one fold interval (10 s) of the timeline.
"""
    print(section, flush=True)
    return section


if __name__ == "__main__":  # pragma: no cover - `python -m bench.reports` runs this section alone
    run_and_append(Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md")
