"""The fold of lead_events into report counters: exactly once across crashes, and equal to a rebuild
from the sources after a random sequence of operations done through the services."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone

import pytest

from jobs.registry import load_jobs, run_job
from server.actor import Actor
from server.clock import FixedClock
from server.errors import ApiError
from server.schemas.contracts import ContractCreate, PaymentIn
from server.schemas.leads import FollowupCreate, LeadCreate, StageChange
from server.services.lifecycle import allowed_targets
from server.services.stats import cum_plan

load_jobs()


@pytest.fixture
def clock():
    return FixedClock(datetime.now(timezone.utc).replace(microsecond=0))


def actor_of(person) -> Actor:
    return Actor(id=person.id, role=person.user["role"], team_id=person.team_id, name=person.user.get("name"), token_version=person.user.get("token_version", 0))


def totals(raw_db, scope: str) -> dict:
    """A scope's running totals up to its last day with events."""
    return raw_db["stats_cum"].find_one({"_id": f"{scope}:head"}) or {}


def clean(docs: list[dict], drop=("seq",)) -> dict:
    """Counter documents without bookkeeping fields or zero counters, keyed by _id."""
    out = {}
    for d in docs:
        body = {k: v for k, v in d.items() if k not in drop and k != "_id" and v != 0}
        if any(isinstance(v, int) and not isinstance(v, bool) for v in body.values()):
            out[d["_id"]] = body
    return out


async def snapshot(raw_db) -> tuple[dict, dict, dict]:
    return (
        clean(list(raw_db["stats_cum"].find({}))),
        clean(list(raw_db["stats_current"].find({}))),
        {d["_id"]: d for d in raw_db["stats_leads"].find({})},
    )


async def some_leads(ctx, rep, n: int) -> list[str]:
    ids = []
    for i in range(n):
        doc, _ = await ctx.leads.create(actor_of(rep), LeadCreate(name=f"客户{i}"))
        ids.append(doc["_id"])
    return ids


@pytest.mark.gen_test(timeout=60)
async def test_a_crash_between_any_two_steps_neither_loses_nor_doubles(ctx, people, raw_db, clock):
    rep = await people.rep()
    leads = await some_leads(ctx, rep, 3)
    await ctx.followups.add(actor_of(rep), leads[0], FollowupCreate(kind="visit", content="上门", location={"lat": 39.9, "lng": 116.4}))
    stats = ctx.stats

    # Crash after the claim: the next run finds the claimed batch and folds it once.
    batch, events, recovered = await stats.claim()
    assert not recovered and len(events) == 5  # 3 created + follow-up + its new → contacted move
    result = await stats.fold_once(clock.now())
    assert result.batch == batch and result.recovered
    assert totals(raw_db, rep.team_id)["created"] == 3

    # Crash after prepare: the recorded deltas are applied, not recomputed.
    await some_leads(ctx, rep, 2)
    batch, events, _ = await stats.claim()
    record = await stats.prepare(batch, events, clock.now())
    assert raw_db["stats_batches"].find_one({"_id": batch})["state"] == "prepared"
    await stats.fold_once(clock.now())
    assert totals(raw_db, rep.team_id)["created"] == 5

    # Crash after apply (twice, even), before the events were marked: nothing is counted again.
    await some_leads(ctx, rep, 1)
    batch, events, _ = await stats.claim()
    record = await stats.prepare(batch, events, clock.now())
    await stats.apply(record)
    await stats.apply(record)  # a retry of a half-done apply
    assert totals(raw_db, rep.team_id)["created"] == 6
    again = await stats.fold_once(clock.now())
    assert again.recovered and totals(raw_db, rep.team_id)["created"] == 6
    assert totals(raw_db, rep.team_id)[f"{rep.id}__received"] == 6 and totals(raw_db, "*")["visits"] == 1
    assert raw_db["stats_batches"].count_documents({}) == 0
    assert raw_db["lead_events"].count_documents({"fold.state": "done"}) == raw_db["lead_events"].count_documents({})

    # Population: 6 leads, one of them contacted by the follow-up.
    current = {d["_id"]: d["count"] for d in raw_db["stats_current"].find({})}
    assert current[f"{rep.team_id}:new"] == 5 and current[f"{rep.team_id}:contacted"] == 1 and current["*:new"] == 5

    # Nothing left: the job reports an empty run.
    assert (await run_job(ctx, "fold_stats", clock.now()))["events"] == 0


@pytest.mark.gen_test(timeout=60)
async def test_a_partly_applied_batch_is_completed_exactly_once(ctx, people, raw_db, clock):
    """A crash in the middle of apply: some counter documents have the batch, others do not."""
    rep = await people.rep()
    await some_leads(ctx, rep, 2)
    batch, events, _ = await ctx.stats.claim()
    record = await ctx.stats.prepare(batch, events, clock.now())
    day = clock.now().astimezone(ctx.settings.tz).date().isoformat()
    import server.services.stats as stats_module

    real = stats_module._bulk_ignoring_duplicates
    calls = []

    async def crash_on_second(collection, ops):
        calls.append(collection.name)
        if len(calls) == 2:
            raise RuntimeError("instance killed")
        await real(collection, [op for op in ops if op._filter["_id"].startswith("*:")])  # only part of the first write landed

    stats_module._bulk_ignoring_duplicates = crash_on_second
    try:
        with pytest.raises(RuntimeError):
            await ctx.stats.apply(record)
    finally:
        stats_module._bulk_ignoring_duplicates = real
    assert raw_db["stats_batches"].find_one({"_id": batch})["state"] == "prepared"
    assert totals(raw_db, "*")["created"] == 2 and raw_db["stats_cum"].find_one({"_id": f"*:{day}"})["created"] == 2
    assert totals(raw_db, rep.team_id) == {} and raw_db["stats_current"].count_documents({}) == 0
    await ctx.stats.fold_once(clock.now())
    assert totals(raw_db, "*")["created"] == 2 and raw_db["stats_cum"].find_one({"_id": f"*:{day}"})["created"] == 2
    assert totals(raw_db, rep.team_id)["created"] == 2 and totals(raw_db, rep.team_id)[f"{rep.id}__received"] == 2
    assert raw_db["stats_current"].find_one({"_id": f"{rep.team_id}:new"})["count"] == 2


@pytest.mark.gen_test(timeout=90)
async def test_incremental_counters_equal_a_rebuild_after_random_operations(ctx, people, raw_db, clock):
    rng = random.Random(8)
    manager = await people.manager()
    reps = [await people.rep(), await people.rep(), await people.rep()]
    others = [await people.rep(team="华南销售部"), await people.rep(team="华南销售部")]
    staff = [*reps, *others]
    leads: list[str] = []
    refused: list = []
    for step in range(70):
        clock.advance(minutes=rng.randint(1, 400))  # crosses business days
        op = rng.choice(["create", "create", "followup", "followup", "stage", "stage", "stage", "release", "claim", "claim", "assign"])
        person = rng.choice(staff)
        try:
            if op == "create" or not leads:
                doc, _ = await ctx.leads.create(actor_of(person), LeadCreate(name=f"客户{step}"))
                leads.append(doc["_id"])
            elif op == "followup":
                lead = raw_db["leads"].find_one({"_id": rng.choice(leads)})
                owner = next((p for p in staff if p.id == lead.get("owner_id")), None)
                if owner:
                    kind = rng.choice(["call", "visit", "wechat"])
                    await ctx.followups.add(actor_of(owner), lead["_id"], FollowupCreate(
                        kind=kind, content="跟进", location={"lat": 31.2, "lng": 121.5} if kind == "visit" else None))
            elif op == "stage":
                lead = raw_db["leads"].find_one({"_id": rng.choice(leads)})
                targets = [t for t in allowed_targets(lead["stage"])]
                if targets:
                    to = rng.choice(targets)
                    await ctx.leads.change_stage(actor_of(manager) if lead["team_id"] == manager.team_id else Actor(id="adm", role="admin"),
                                                 lead["_id"], StageChange(to=to, reason="原因", version=lead["version"]))
            elif op == "release":
                lead = raw_db["leads"].find_one({"_id": rng.choice(leads), "owner_id": {"$ne": None}})
                if lead:
                    await ctx.pool.release(Actor(id="adm", role="admin"), lead["_id"], "联系不上")
            elif op == "claim":
                pooled = list(raw_db["leads"].find({"pool": True}))
                if pooled:
                    lead = rng.choice(pooled)
                    free = [p for p in staff if p.team_id == lead["team_id"] and p.id not in (lead.get("cooldowns") or {})]
                    if free:
                        await ctx.pool.claim(actor_of(rng.choice(free)), lead["_id"])
            elif op == "assign":
                lead = raw_db["leads"].find_one({"_id": rng.choice(leads)})
                mates = [p for p in staff if p.team_id == lead["team_id"]]
                await ctx.pool.assign(Actor(id="adm", role="admin"), lead["_id"], rng.choice(mates).id, "调整")
        except ApiError as exc:
            refused.append((op, exc.code))  # refused moves (capacity, cool-downs, invalid transitions) are part of the sequence
        if step % 9 == 4:  # the job runs now and then, mid-sequence
            await run_job(ctx, "fold_stats", clock.now())
    # Money: contracts signed (new, repurchase, renewal) and payments received (some backdated),
    # with the fold running in between.
    boss = actor_of(manager)
    north = [i for i in leads if raw_db["leads"].find_one({"_id": i})["team_id"] == manager.team_id][:3]
    for n, lead_id in enumerate([*north, *north[:1]]):
        clock.advance(minutes=rng.randint(60, 2000))
        start = clock.now().astimezone(ctx.settings.tz).date()
        made = await ctx.contracts.create(Actor(id="adm", role="admin"), ContractCreate(
            lead_id=lead_id, title="合同", amount_fen=1_000_000 * (n + 1), start_date=start, end_date=start + timedelta(days=364)))
        made = await ctx.contracts.submit(Actor(id="adm", role="admin"), made["_id"], made["version"])
        _, made = await ctx.contracts.decide(boss, made["_id"], "approve", made["version"], "")
        await ctx.payments.record(boss, made["_id"], PaymentIn(amount_fen=400_000, received_at=clock.now() - timedelta(days=rng.randint(0, 20)), method="cash"))
        if n == 0:
            renewal = await ctx.contracts.renew(Actor(id="adm", role="admin"), made["_id"])
            renewal = await ctx.contracts.submit(Actor(id="adm", role="admin"), renewal["_id"], renewal["version"])
            await ctx.contracts.decide(boss, renewal["_id"], "approve", renewal["version"], "")
        if n == 1:
            await run_job(ctx, "fold_stats", clock.now())
    # After-sale service: ticket and survey events on the same leads (server/services/stats.py
    # apply_service), some handled by reps of the lead's team, with the fold running in between.
    srng = random.Random(16)
    for n in range(30):
        clock.advance(minutes=srng.randint(1, 300))
        lead = raw_db["leads"].find_one({"_id": srng.choice(leads)})
        handler = srng.choice([p for p in staff if p.team_id == lead["team_id"]])
        kind, data = service_event(srng, handler.id)
        await ctx.leads.add_event(lead["_id"], kind, actor_of(handler), data, at=clock.now())
        if n % 7 == 3:
            await run_job(ctx, "fold_stats", clock.now())
    await run_job(ctx, "fold_stats", clock.now())
    incremental = await snapshot(raw_db)
    company = incremental[0]["*:head"]
    assert company["svc_opened"] == raw_db["lead_events"].count_documents({"kind": "ticket_opened"})
    assert company.get("svc_csat_n", 0) == raw_db["lead_events"].count_documents({"kind": "survey_answered"})
    money = {k: v for k, v in incremental[0][f"{manager.team_id}:head"].items() if k.startswith("rv")}
    assert (money["rv__signed_n"], money["rv__new_n"], money["rv__repurchase_n"], money["rv__renewal_n"]) == (5, 3, 1, 1)
    assert money["rv__collected_fen"] == 1_600_000 and sum(v for k, v in money.items() if k.startswith("rv_rep__") and k.endswith("__payments_n")) == 4
    assert raw_db["lead_events"].count_documents({"fold": None}) == 0

    raw_db["stats_cum"].insert_one({"_id": "gone-team:head", "scope": "gone-team", "first": "2026-01-01", "last": "2026-01-01", "created": 5})
    rebuilt = await ctx.stats.rebuild(clock.now())
    assert raw_db["stats_cum"].find_one({"_id": "gone-team:head"}) is None  # counters the sources do not support are removed
    assert rebuilt["events"] == raw_db["lead_events"].count_documents({})
    again = await snapshot(raw_db)
    assert incremental[0] == again[0]
    assert incremental[1] == again[1]
    assert incremental[2] == again[2]
    # and the populations are the leads' stages now
    truth: dict[str, int] = {}
    for lead in raw_db["leads"].find({}, {"team_id": 1, "stage": 1}):
        truth[f"{lead['team_id']}:{lead['stage']}"] = truth.get(f"{lead['team_id']}:{lead['stage']}", 0) + 1
    assert {k: v["count"] for k, v in again[1].items() if not k.startswith("*:")} == truth
    assert again[0]["*:head"]["followups"] == raw_db["lead_events"].count_documents({"kind": "followup"})
    # one running-total document per day from each scope's first event to its last
    for scope in ("*", reps[0].team_id, others[0].team_id):
        head = again[0][f"{scope}:head"]
        days = sorted(k.split(":", 1)[1] for k in again[0] if k.startswith(f"{scope}:") and k != f"{scope}:head")
        assert days[0] == head["first"] and days[-1] == head["last"] and len(days) == (date.fromisoformat(head["last"]) - date.fromisoformat(head["first"])).days + 1
    # the sequence did exercise every kind of operation
    kinds = set(raw_db["lead_events"].distinct("kind"))
    assert {"created", "followup", "stage_changed", "released", "claimed", "assigned"} <= kinds, (kinds, refused)

    # After a rebuild the fold carries on from where it stopped.
    doc, _ = await ctx.leads.create(actor_of(reps[0]), LeadCreate(name="新客户"))
    await run_job(ctx, "fold_stats", clock.now())
    before = again[0][f"{reps[0].team_id}:head"]["created"]
    assert totals(raw_db, reps[0].team_id)["created"] == before + 1


def service_event(rng: random.Random, handler: str) -> tuple[str, dict]:
    """One ticket or survey event as TicketService and SurveyService write them."""
    ticket = f"t{rng.randint(1, 8)}"
    kind = rng.choice(["ticket_opened", "ticket_opened", "ticket_assigned", "ticket_replied", "ticket_resolved", "ticket_breached", "ticket_reopened", "survey_answered"])
    data: dict = {
        "ticket_opened": {"ticket_id": ticket, "category": "repair", "priority": "normal", "title": "坏了", "by": "customer"},
        "ticket_assigned": {"ticket_id": ticket, "assignee_id": handler, "previous_assignee_id": None, "strategy": "round_robin", "rule_id": None, "reason": "规则", "escalated": False},
        "ticket_replied": {"ticket_id": ticket, "author_role": "rep", "internal": False, "first_response": rng.random() < 0.7, "first_response_s": rng.randint(0, 90000), "assignee_id": handler},
        "ticket_resolved": {"ticket_id": ticket, "assignee_id": handler, "resolution_s": rng.randint(60, 3_000_000), "breached_first_response": rng.random() < 0.3, "breached_resolution": rng.random() < 0.3},
        "ticket_breached": {"ticket_id": ticket, "which": rng.choice(["first_response", "resolution"]), "assignee_id": handler, "escalated_to": []},
        "ticket_reopened": {"ticket_id": ticket, "reason": "又坏了"},
        "survey_answered": {"survey_id": f"s{rng.randint(1, 99)}", "source": "ticket", "source_id": ticket, "csat": rng.randint(1, 5), "nps": rng.randint(0, 10), "ticket_id": ticket, "handler_id": handler},
    }[kind]
    return kind, data


def test_running_totals_folded_batch_by_batch_equal_totals_made_at_once():
    """Batches with late events (before a scope's first day), gaps and days after the last one:
    applying each batch's plan gives the documents a single plan over everything gives."""
    rng = random.Random(3)
    days = [f"2026-03-{d:02d}" for d in range(1, 29)]
    batches = []
    for _ in range(12):
        batch: dict = {}
        for _ in range(rng.randint(1, 6)):
            scope, day, key = rng.choice(["t1", "t2", "*"]), rng.choice(days), rng.choice(["created", "r1__received", "r2__visits"])
            batch.setdefault(scope, {}).setdefault(day, {})
            batch[scope][day][key] = batch[scope][day].get(key, 0) + rng.randint(1, 3)
        batches.append(batch)

    store: dict[str, dict] = {}
    for batch in batches:
        plan = cum_plan(batch, {k: v for k, v in store.items() if k.endswith(":head")})
        for d in plan["inc"]:
            assert d["_id"] in store, "increments only documents that exist"
            for k, n in d["inc"].items():
                store[d["_id"]][k] = store[d["_id"]].get(k, 0) + n
        for d in (*plan["new"], *plan["heads"]):
            assert d["_id"].endswith(":head") or d["_id"] not in store, "a new day's document is written once"
            store[d["_id"]] = dict(d)

    merged: dict = {}
    for batch in batches:
        for scope, by_day in batch.items():
            for day, fields in by_day.items():
                for k, n in fields.items():
                    slot = merged.setdefault(scope, {}).setdefault(day, {})
                    slot[k] = slot.get(k, 0) + n
    whole = cum_plan(merged, {})
    at_once = {d["_id"]: d for d in (*whole["new"], *whole["heads"])}
    assert store == at_once
    # and a day's totals are everything up to that day
    some_day = days[15]
    expected = sum(n for day, fields in merged["t1"].items() if day <= some_day for k, n in fields.items() if k == "created")
    first = at_once["t1:head"]["first"]
    assert (at_once[f"t1:{some_day}"].get("created", 0) if some_day >= first else 0) == expected
