"""Lead allocation: fairness of each strategy, what makes a member unavailable, the reason
text, what happens when nobody can take a lead, three schedulers at once, leases, and the command
budget of a sweep."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest

from allocation_kit import (
    ADMIN, MONDAY_10, SATURDAY_10, capture, counts, in_order, insert_waiting, make_form, make_rule, owners,
)
from jobs.registry import load_jobs, run_job
from server.actor import Actor
from server.clock import FixedClock
from server.context import build_context
from server.db import connect
from server.schemas.leads import LeadCreate
from server.schemas.users import UserUpdate
from server.services.allocation import swrr_order
from server.services.leases import LeaseService

NOW = MONDAY_10


async def deactivate(ctx, person) -> None:
    user = await ctx.users.by_id(person.id)
    await ctx.users.update_user(ADMIN, person.id, UserUpdate.model_validate({"active": False}), user["version"])


async def own_leads(ctx, person, n: int) -> None:
    """``person`` captures ``n`` leads themselves: they count as open leads they own."""
    for i in range(n):
        await ctx.leads.create(Actor.from_user(person.user), LeadCreate(name=f"自拓{i}"))


def open_leads(raw_db, person) -> int:
    from bson import ObjectId

    return raw_db.users.find_one({"_id": ObjectId(person.id)})["open_leads"]


# ---------------------------------------------------------------- fairness
@pytest.mark.gen_test(timeout=60)
async def test_round_robin_1000_leads_over_7_reps_differ_by_at_most_one(ctx, people, raw_db):
    team = await people.team()
    reps = [await people.rep(name=f"代表{i}") for i in range(7)]
    rule = await make_rule(ctx, team, reps)
    leads = insert_waiting(raw_db, team, 1000)

    stats = await ctx.allocation.sweep(NOW)

    assert stats["assigned"] == 1000 and stats["waiting"] == 0 and stats["pooled"] == 0
    per_rep = counts(raw_db, leads, reps)
    assert sum(per_rep) == 1000
    assert max(per_rep) - min(per_rep) <= 1, per_rep
    assert [open_leads(raw_db, r) for r in reps] == per_rep, "each rep's open-lead counter matches what they got"
    assert raw_db.allocation_rules.find_one({"_id": rule["_id"]})["turn"] == 1000
    # strict rotation: the k-th lead (oldest first) went to member k mod 7
    ordered = in_order(raw_db, leads)
    assert [d["owner_id"] for d in ordered[:14]] == [r.id for r in reps] * 2


@pytest.mark.gen_test(timeout=60)
async def test_weighted_3_2_1_gives_exact_proportions(ctx, people, raw_db):
    team = await people.team()
    reps = [await people.rep(name=f"权重{i}", capacity=1000) for i in range(3)]
    await make_rule(ctx, team, reps, strategy="weighted", weights=[3, 2, 1])
    leads = insert_waiting(raw_db, team, 120)

    stats = await ctx.allocation.sweep(NOW)

    assert stats["assigned"] == 120
    assert counts(raw_db, leads, reps) == [60, 40, 20]
    # and every window of 6 consecutive leads (one period) holds exactly 3/2/1
    sequence = [d["owner_id"] for d in in_order(raw_db, leads)]
    for start in range(0, 120 - 6 + 1):
        window = Counter(sequence[start:start + 6])
        assert sorted(window.values()) == [1, 2, 3], (start, window)


def test_swrr_order_3_to_1_over_every_window_of_4():
    order = swrr_order([3, 1])
    assert len(order) == 4 and order.count(0) == 3 and order.count(1) == 1
    stream = order * 5
    for start in range(len(stream) - 3):
        assert stream[start:start + 4].count(1) == 1, (start, stream)
    # smooth: the heavy member's turns are spread, never the light member twice in a row
    heavy = swrr_order([5, 1, 1])
    assert heavy.count(0) == 5 and all(heavy[i] != 1 or heavy[i + 1] != 1 for i in range(len(heavy) - 1))
    assert swrr_order([1, 1, 1]) == [0, 1, 2]


@pytest.mark.gen_test
async def test_weighted_3_1_alternates_within_every_window_of_4_leads(ctx, people, raw_db):
    team = await people.team()
    a, b = await people.rep(name="甲"), await people.rep(name="乙")
    await make_rule(ctx, team, [a, b], strategy="weighted", weights=[3, 1])
    await make_form(ctx, team)
    leads = await capture(ctx, "north-expo", 12)

    await ctx.allocation.sweep(NOW)

    sequence = [d["owner_id"] for d in in_order(raw_db, leads)]
    for start in range(len(sequence) - 3):
        assert Counter(sequence[start:start + 4]) == {a.id: 3, b.id: 1}, sequence
    reason = raw_db.leads.find_one({"_id": leads[0]})["assignment"]["reason"]
    assert "weighted 3/4, turn 1 of 4" in reason["en"] and "按权重 3/4，第 1/4 轮" in reason["zh-CN"], reason


@pytest.mark.gen_test
async def test_capacity_counts_open_leads_and_is_named_in_the_reason(ctx, people, raw_db):
    team = await people.team()
    full = await people.rep(name="李雷", capacity=2)
    other = await people.rep(name="韩梅梅", capacity=50)
    await own_leads(ctx, full, 1)  # already owns one open lead
    await make_rule(ctx, team, [full, other])
    await make_form(ctx, team)
    leads = await capture(ctx, "north-expo", 6)

    stats = await ctx.allocation.sweep(NOW)

    assert stats["assigned"] == 6
    assert counts(raw_db, leads, [full, other]) == [1, 5], "李雷 had room for one more lead only"
    assert open_leads(raw_db, full) == 2 and open_leads(raw_db, other) == 5
    ordered = in_order(raw_db, leads)
    # turn 3 was 李雷's, but he was full by then
    third = ordered[2]["assignment"]
    assert third["owner_id"] == other.id
    assert third["reason"] == {
        "en": "rule 华北大客户 matched tag north; round-robin turn 2 of 2; skipped 李雷: at capacity 2/2",
        "zh-CN": "规则 华北大客户：匹配标签 north；轮询第 2/2 位；跳过 李雷（已达保有量上限 2/2）",
    }, third


@pytest.mark.gen_test
async def test_daily_quota_is_respected_and_resets_the_next_day(ctx, people, raw_db):
    team = await people.team()
    manager = await people.manager()
    reps = [await people.rep(name=f"配额{i}") for i in range(3)]
    await make_rule(ctx, team, reps, daily_quota=2)
    await make_form(ctx, team)
    leads = await capture(ctx, "north-expo", 8)

    stats = await ctx.allocation.sweep(NOW)

    assert stats["assigned"] == 6 and stats["waiting"] == 2
    assert counts(raw_db, leads, reps) == [2, 2, 2]
    waiting = [d for d in in_order(raw_db, leads) if d["owner_id"] is None]
    assert len(waiting) == 2 and all(d["awaiting_allocation"] for d in waiting)
    note = raw_db.notifications.find_one({"kind": "allocation_stuck", "user_id": manager.id, "data.lead_id": waiting[0]["_id"]})
    assert note is not None and "今日配额已满 2/2" in note["body"], note

    stats = await ctx.allocation.sweep(NOW + timedelta(days=1))
    assert stats["assigned"] == 2
    assert sorted(counts(raw_db, leads, reps)) == [2, 3, 3]


@pytest.mark.gen_test
async def test_least_loaded_picks_fewest_open_leads_then_longest_wait(ctx, people, raw_db):
    team = await people.team()
    a, b, c = await people.rep(name="甲"), await people.rep(name="乙"), await people.rep(name="丙")
    await own_leads(ctx, a, 2)
    await own_leads(ctx, c, 1)
    rule = await make_rule(ctx, team, [a, b, c], strategy="least_loaded")
    await make_form(ctx, team)

    first = await capture(ctx, "north-expo", 1, prefix="一")
    await ctx.allocation.sweep(NOW)
    lead = raw_db.leads.find_one({"_id": first[0]})
    assert lead["owner_id"] == b.id, "乙 had no open leads"
    assert lead["assignment"]["strategy"] == "least_loaded"
    assert "least loaded: 0/200 open leads" in lead["assignment"]["reason"]["en"]

    # now 乙 and 丙 have one each, 甲 two: 丙 has waited longest (never assigned) → 丙
    second = await capture(ctx, "north-expo", 1, prefix="二")
    await ctx.allocation.sweep(NOW)
    assert owners(raw_db, second)[second[0]] == c.id

    # all tied at 2 open leads after 乙 gets one more; put 丙 first in the list: order must not decide
    third = await capture(ctx, "north-expo", 1, prefix="三")
    await ctx.allocation.sweep(NOW)
    assert owners(raw_db, third)[third[0]] == b.id
    await asyncio.sleep(0.05)
    await ctx.allocation.update_rule(ADMIN, str(rule["_id"]), _update(members=[c.id, b.id, a.id]), rule["version"])
    fourth = await capture(ctx, "north-expo", 1, prefix="四")
    await ctx.allocation.sweep(NOW)
    assert [open_leads(raw_db, p) for p in (a, b, c)] == [3, 2, 2]
    assert owners(raw_db, fourth)[fourth[0]] == a.id, "甲 (never assigned by a rule) waited longest"


def _update(**fields):
    from server.schemas.allocation import RuleUpdate

    return RuleUpdate.model_validate(fields)


@pytest.mark.gen_test
async def test_inactive_members_are_skipped_and_named(ctx, people, raw_db):
    team = await people.team()
    a, b, c = await people.rep(name="甲"), await people.rep(name="乙"), await people.rep(name="丙")
    await make_rule(ctx, team, [a, b, c])
    await deactivate(ctx, b)
    await make_form(ctx, team)
    leads = await capture(ctx, "north-expo", 6)

    await ctx.allocation.sweep(NOW)

    # 乙's turns go to the next available member, 丙: turns 1..6 → 甲 丙 丙 甲 丙 丙
    assert counts(raw_db, leads, [a, b, c]) == [2, 0, 4]
    second = in_order(raw_db, leads)[1]["assignment"]
    assert second["owner_id"] == c.id
    assert second["reason"]["en"] == "rule 华北大客户 matched tag north; round-robin turn 3 of 3; skipped 乙: inactive", second
    assert second["reason"]["zh-CN"] == "规则 华北大客户：匹配标签 north；轮询第 3/3 位；跳过 乙（已停用）", second


@pytest.mark.gen_test
async def test_outside_working_hours_lead_waits_and_managers_are_told_once_a_day(ctx, people, raw_db):
    team = await people.team()
    managers = [await people.manager(name="经理甲"), await people.manager(name="经理乙")]
    other_team_manager = await people.manager(team="华南销售部")
    reps = [await people.rep(name="周末") for _ in range(2)]
    await make_rule(ctx, team, reps, working_hours={"days": [1, 2, 3, 4, 5], "start": "09:00", "end": "18:00"})
    await make_form(ctx, team)
    leads = await capture(ctx, "north-expo", 2)

    for _ in range(2):  # the job runs every 30 s: the second run must not repeat the notification
        stats = await ctx.allocation.sweep(SATURDAY_10)
        assert stats["assigned"] == 0 and stats["waiting"] == 2

    assert set(owners(raw_db, leads).values()) == {None}
    assert raw_db.leads.count_documents({"_id": {"$in": leads}, "awaiting_allocation": True}) == 2
    for m in managers:
        notes = list(raw_db.notifications.find({"kind": "allocation_stuck", "user_id": m.id}))
        assert sorted(n["data"]["lead_id"] for n in notes) == sorted(leads), "one per lead per manager"
        assert all("不在工作时间" in n["body"] for n in notes)
    assert raw_db.notifications.count_documents({"user_id": other_team_manager.id}) == 0
    assert raw_db.notifications.count_documents({"kind": "allocation_stuck"}) == 4

    # a day later, still stuck: one more per lead and manager (once a day)
    await ctx.allocation.sweep(SATURDAY_10 + timedelta(days=1))
    assert raw_db.notifications.count_documents({"kind": "allocation_stuck"}) == 8
    # Monday morning: allocated
    stats = await ctx.allocation.sweep(SATURDAY_10 + timedelta(days=2))
    assert stats["assigned"] == 2 and None not in owners(raw_db, leads).values()


@pytest.mark.gen_test
async def test_no_matching_rule_sends_the_lead_to_its_teams_pool(ctx, people, raw_db):
    team = await people.team()
    rep = await people.rep()
    await make_rule(ctx, team, [rep])
    await make_form(ctx, team, slug="south-expo", tags=("south",))
    leads = await capture(ctx, "south-expo", 1)

    stats = await ctx.allocation.sweep(NOW)

    assert stats == {"considered": 1, "assigned": 0, "pooled": 1, "waiting": 0, "lost_races": 0}
    lead = raw_db.leads.find_one({"_id": leads[0]})
    assert lead["pool"] and lead["owner_id"] is None and not lead["awaiting_allocation"]
    events = list(raw_db.lead_events.find({"lead_id": leads[0], "kind": "pooled"}))
    assert len(events) == 1 and "no allocation rule matched" in events[0]["data"]["reason"]["en"]
    assert events[0]["data"]["reason"]["zh-CN"] == "没有匹配的分配规则，已进入团队公海"
    page = await ctx.pool.list(Actor.from_user(rep.user), 20, None, None)
    assert [d["_id"] for d in page.items] == leads
    assert (await ctx.allocation.sweep(NOW))["considered"] == 0, "a pooled lead is no longer waiting"


@pytest.mark.gen_test
async def test_leads_nobody_can_take_yet_do_not_block_newer_leads(ctx, people, raw_db):
    """More stuck leads than one batch (a weekend of submissions for a team that works weekdays)
    must not starve the leads behind them: the sweep walks past them."""
    north = await people.team()
    south = await people.team("华南销售部")
    await make_rule(ctx, north, [await people.rep()], working_hours={"days": [1, 2, 3, 4, 5], "start": "09:00", "end": "18:00"})
    south_rep = await people.rep(team="华南销售部")
    await make_rule(ctx, south, [south_rep], name="华南")
    await make_form(ctx, north)
    await make_form(ctx, south, slug="south-expo")
    stuck = await capture(ctx, "north-expo", 6)  # oldest first
    later = await capture(ctx, "south-expo", 3)

    stats = await ctx.allocation.sweep(SATURDAY_10, batch_size=4)

    assert set(owners(raw_db, later).values()) == {south_rep.id}
    assert stats["assigned"] == 3 and stats["waiting"] == 6, stats
    assert set(owners(raw_db, stuck).values()) == {None}


# ---------------------------------------------------------------- reason, events, notifications
@pytest.mark.gen_test
async def test_every_assignment_has_a_reason_an_event_and_a_notification(ctx, people, raw_db):
    team = await people.team()
    reps = [await people.rep(name=n) for n in ("张三", "李四", "王五")]
    rule = await make_rule(ctx, team, reps)
    await make_form(ctx, team)
    leads = await capture(ctx, "north-expo", 3)

    await ctx.allocation.sweep(NOW)

    ordered = in_order(raw_db, leads)
    for turn, (lead, rep) in enumerate(zip(ordered, reps), start=1):
        a = lead["assignment"]
        assert a["owner_id"] == rep.id and a["rule_id"] == str(rule["_id"]) and a["strategy"] == "round_robin"
        assert a["reason"] == {"en": f"rule 华北大客户 matched tag north; round-robin turn {turn} of 3", "zh-CN": f"规则 华北大客户：匹配标签 north；轮询第 {turn}/3 位"}
        events = list(raw_db.lead_events.find({"lead_id": lead["_id"], "kind": "assigned"}))
        assert len(events) == 1 and events[0]["data"]["owner_id"] == rep.id and events[0]["data"]["reason"] == a["reason"]
        notes = list(raw_db.notifications.find({"kind": "lead_assigned", "data.lead_id": lead["_id"]}))
        assert [n["user_id"] for n in notes] == [rep.id]
        assert a["reason"]["zh-CN"] in notes[0]["body"]  # notifications speak Chinese


@pytest.mark.gen_test
async def test_preview_says_who_is_next_and_assigns_nothing(ctx, people, raw_db):
    team = await people.team()
    a, b = await people.rep(name="甲", capacity=0), await people.rep(name="乙")
    rule = await make_rule(ctx, team, [a, b])
    await make_form(ctx, team)
    leads = await capture(ctx, "north-expo", 1)
    from server.schemas.allocation import PreviewIn

    for _ in range(2):
        answer = await ctx.allocation.preview(ADMIN, str(rule["_id"]), PreviewIn(tags=["north"]))
        assert answer["owner_id"] == b.id and answer["owner_name"] == "乙"
        assert answer["reason"]["en"] == "rule 华北大客户 matched tag north; round-robin turn 2 of 2; skipped 甲: at capacity 0/0"
    assert raw_db.allocation_rules.find_one({"_id": rule["_id"]})["turn"] == 0
    assert owners(raw_db, leads) == {leads[0]: None}
    assert raw_db.lead_events.count_documents({"kind": "assigned"}) == 0
    miss = await ctx.allocation.preview(ADMIN, str(rule["_id"]), PreviewIn(tags=["south"]))
    assert miss["matched"] is False and miss.get("owner_id") is None


# ---------------------------------------------------------------- three schedulers at once
@pytest.mark.gen_test(timeout=90)
async def test_three_schedulers_assign_each_of_300_leads_exactly_once(ctx, people, raw_db, mongo_uri, db_name, recorder):
    load_jobs()
    team = await people.team()
    reps = [await people.rep(name=f"并发{i}") for i in range(5)]
    await make_rule(ctx, team, reps)
    leads = insert_waiting(raw_db, team, 300)  # volume setup (see allocation_kit.insert_waiting)
    databases = [connect(mongo_uri, ctx.settings, db_name=db_name, listeners=[recorder]) for _ in range(3)]
    contexts = [build_context(ctx.settings, d) for d in databases]
    try:
        # 1. the sweeps themselves, at once, bypassing the lease: conditional writes alone must hold
        results = await asyncio.gather(*(c.allocation.sweep(NOW) for c in contexts))
        _assert_each_assigned_once(raw_db, leads, reps)
        assert sum(r["assigned"] for r in results) == 300
        assert sum(r["lost_races"] for r in results) == sum(r["considered"] for r in results) - 300
        # Fairness bound: each sweep reserves a block of 300 turns, and 300 is a multiple of the 5
        # members, so every sweep computes the same owner for the k-th waiting lead and it does
        # not matter which sweep wins a lead: 60 each (±1 allowed only for a sweep that read the
        # waiting list after another had already assigned some, which shifts its positions).
        per_rep = counts(raw_db, leads, reps)
        assert max(per_rep) - min(per_rep) <= 1, per_rep

        # 2. the production path: three instances run the job under its lease at the same time
        more = insert_waiting(raw_db, team, 300, start=NOW)  # volume setup
        results = await asyncio.gather(*(run_job(c, "allocate_new_leads", NOW) for c in contexts))
        ran = [r for r in results if "skipped" not in r]
        assert len(ran) == 1, results  # one instance holds the lease, the others skip
        assert ran[0]["assigned"] == 300 and ran[0]["lost_races"] == 0
        _assert_each_assigned_once(raw_db, leads + more, reps)
        per_rep = counts(raw_db, more, reps)
        assert max(per_rep) - min(per_rep) <= 1, per_rep
    finally:
        for d in databases:
            await d.close()


def _assert_each_assigned_once(raw_db, leads, reps) -> None:
    docs = list(raw_db.leads.find({"_id": {"$in": leads}}))
    assert len(docs) == len(leads), "none lost"
    assert all(d["owner_id"] in {r.id for r in reps} and not d["awaiting_allocation"] for d in docs)
    assert all(d["version"] == 2 for d in docs), "each lead written once by allocation (version 1 → 2)"
    per_lead = Counter(e["lead_id"] for e in raw_db.lead_events.find({"kind": "assigned", "lead_id": {"$in": leads}}))
    assert len(per_lead) == len(leads) and set(per_lead.values()) == {1}, "one assigned event per lead"
    notes = Counter(n["data"]["lead_id"] for n in raw_db.notifications.find({"kind": "lead_assigned", "data.lead_id": {"$in": leads}}))
    assert set(notes.values()) == {1} and len(notes) == len(leads)
    total_open = sum(u.get("open_leads", 0) for u in raw_db.users.find({"role": "rep"}))
    owned = raw_db.leads.count_documents({"owner_id": {"$in": [r.id for r in reps]}})
    assert total_open == owned, "open-lead counters count each lead once"


# ---------------------------------------------------------------- leases
@pytest.mark.gen_test
async def test_dead_holders_lease_is_taken_over_a_live_one_is_not(ctx, people, raw_db):
    load_jobs()
    team = await people.team()
    rep = await people.rep()
    await make_rule(ctx, team, [rep])
    await make_form(ctx, team)
    leads = await capture(ctx, "north-expo", 2)
    t0 = NOW
    # an instance took the job's lease at t0, then died without releasing it
    dead = LeaseService(ctx.database.collection("leases"), FixedClock(t0), owner="dead-instance")
    assert await dead.acquire("job:allocate_new_leads", 120)

    alive_lease = build_context(ctx.settings, ctx.database, FixedClock(t0 + timedelta(seconds=119)))
    skipped = await run_job(alive_lease, "allocate_new_leads", t0 + timedelta(seconds=119))
    assert skipped["skipped"] == "lease held by another instance"
    assert set(owners(raw_db, leads).values()) == {None}, "a skipped run assigns nothing"
    assert raw_db.leases.find_one({"_id": "job:allocate_new_leads"})["owner"] == "dead-instance"

    expired = build_context(ctx.settings, ctx.database, FixedClock(t0 + timedelta(seconds=121)))
    done = await run_job(expired, "allocate_new_leads", t0 + timedelta(seconds=121))
    assert done["assigned"] == 2
    assert set(owners(raw_db, leads).values()) == {rep.id}
    assert raw_db.leases.find_one({"_id": "job:allocate_new_leads"})["owner"] != "dead-instance"


# ---------------------------------------------------------------- command budget
@pytest.mark.gen_test(timeout=60)
async def test_sweep_reads_rules_and_members_once_per_rule_not_per_lead(ctx, people, raw_db, recorder):
    team = await people.team()
    manager = await people.manager()  # noqa: F841 - a team with a manager, as in production
    reps = [await people.rep(name=f"预算{i}") for i in range(4)]
    await make_rule(ctx, team, reps)
    await make_rule(ctx, team, reps[:2], name="南区", match={"tags_any": ["south"]}, priority=50)

    measured = {}
    for n in (10, 100):
        insert_waiting(raw_db, team, n // 2, tags=("north",))
        insert_waiting(raw_db, team, n - n // 2, tags=("south",))
        start = len(recorder.commands)
        stats = await ctx.allocation.sweep(NOW)
        assert stats["assigned"] == n
        events = [e for e in recorder.commands[start:] if e.command_name not in ("endSessions", "killCursors")]
        reads = [e for e in events if e.command_name in ("find", "getMore") and e.command[e.command_name] in ("allocation_rules", "users")]
        measured[n] = (len(events), len(reads))
    for n, (total, _) in measured.items():
        assert total / n <= 4, f"{total} commands for {n} leads"
    assert measured[10][1] == measured[100][1], measured
    assert measured[100][0] - measured[10][0] <= 90 * 1.2, "about one write per extra lead"


@pytest.mark.gen_test
async def test_a_stuck_lead_without_a_team_does_not_stop_the_sweep(ctx, people, raw_db):
    """A waiting lead whose team is unknown (written before teams were required) sits beside a
    team's stuck leads: the sweep still tells that team's manager, and the teamless lead waits."""
    team = await people.team()
    manager = await people.manager()
    rep = await people.rep(name="配额满")
    await make_rule(ctx, team, [rep], daily_quota=1)
    mine = insert_waiting(raw_db, team, 2)
    orphan = insert_waiting(raw_db, None, 1)
    stats = await ctx.allocation.sweep(NOW)
    assert stats["assigned"] == 1
    waiting = [i for i in mine if raw_db.leads.find_one({"_id": i})["owner_id"] is None]
    assert raw_db.notifications.find_one({"kind": "allocation_stuck", "user_id": manager.id, "data.lead_id": waiting[0]}) is not None
    assert raw_db.leads.find_one({"_id": orphan[0]})["owner_id"] is None
