"""Reports for managers: a seeded team whose figures the test counts itself, business-day
boundaries, scoping, bad ranges, RFM layers and the ``?layer=`` filter."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from jobs.registry import load_jobs, run_job
from leads_kit import LEADS, make_lead
from money_kit import at_shanghai, pay, sign
from server.clock import FixedClock

load_jobs()
SHANGHAI = ZoneInfo("Asia/Shanghai")
FUNNEL, REPS, LIFECYCLE, RFM = (f"/api/v1/reports/{n}" for n in ("funnel", "reps", "lifecycle", "rfm"))


@pytest.fixture
def clock():
    return FixedClock(datetime.now(timezone.utc).replace(microsecond=0))


def shanghai(day: date, hh: int, mm: int) -> datetime:
    return datetime.combine(day, time(hh, mm), SHANGHAI).astimezone(timezone.utc)


def today(clock) -> date:
    return clock.now().astimezone(SHANGHAI).date()


async def fold(ctx, clock) -> None:
    result = await run_job(ctx, "fold_stats", clock.now())
    assert "skipped" not in result


async def move(api, person, lead_id: str, to: str, reason: str | None = None) -> dict:
    r = await api.get(f"{LEADS}/{lead_id}", token=person.token)
    body = {"to": to, "version": r.json["version"], **({"reason": reason} if reason else {})}
    r = await api.post(f"{LEADS}/{lead_id}/stage", json=body, token=person.token)
    assert r.status == 200, r.body
    return r.json


async def followup(api, person, lead_id: str, kind: str = "call") -> None:
    body = {"kind": kind, "content": "沟通需求"}
    if kind == "visit":
        body["location"] = {"lat": 31.23, "lng": 121.47, "address": "上海"}
    r = await api.post(f"{LEADS}/{lead_id}/followups", json=body, token=person.token)
    assert r.status == 201, r.body


def period(d1: date, d2: date, **extra) -> str:
    q = f"?from={d1.isoformat()}&to={d2.isoformat()}"
    return q + "".join(f"&{k}={v}" for k, v in extra.items())


@pytest.mark.gen_test(timeout=60)
async def test_seeded_team_figures_match_what_was_done(api, people, ctx, clock):
    manager, r1, r2 = await people.manager(), await people.rep(), await people.rep()
    other = await people.rep(team="华南销售部")
    admin = await people.admin()  # logged in now: tokens are checked against the real time
    d0 = today(clock) - timedelta(days=3)
    # Day 0 (before the period): r1 has one customer already; r2 a lead in contacted.
    clock.at = shanghai(d0, 10, 0)
    old = await make_lead(api, r1)
    await followup(api, r1, old["id"])
    await move(api, r1, old["id"], "qualified")
    await move(api, r1, old["id"], "customer")
    warm = await make_lead(api, r2)
    await followup(api, r2, warm["id"])
    await make_lead(api, other)  # another team: never in this team's figures
    # Period: days 1 and 2.
    d1, d2 = d0 + timedelta(days=1), d0 + timedelta(days=2)
    clock.at = shanghai(d1, 9, 0)
    mine = [await make_lead(api, r1) for _ in range(4)]
    theirs = [await make_lead(api, r2) for _ in range(2)]
    clock.advance(minutes=20)  # r1 answers lead 0 after 20 minutes (bucket ≤ 30), lead 1 after 3 hours
    await followup(api, r1, mine[0]["id"])
    clock.advance(minutes=160)
    await followup(api, r1, mine[1]["id"], "visit")
    await followup(api, r1, mine[1]["id"], "call")  # a second follow-up is not a first response
    await move(api, r1, mine[0]["id"], "qualified")
    await move(api, r1, mine[0]["id"], "customer")
    await move(api, r1, mine[1]["id"], "lost", "预算不足")
    clock.at = shanghai(d2, 15, 0)
    await move(api, r2, warm["id"], "qualified")
    await followup(api, r2, theirs[0]["id"], "visit")
    await move(api, r1, old["id"], "at_risk")
    await move(api, manager, old["id"], "churned", "改用竞品")
    await move(api, r1, mine[0]["id"], "at_risk")
    # After the period (today): moves that must not count, but shape the populations now.
    clock.at = datetime.now(timezone.utc).replace(microsecond=0)
    await move(api, r1, mine[0]["id"], "retained")
    late = await make_lead(api, r1)
    await fold(ctx, clock)

    r = await api.get(FUNNEL + period(d1, d2), token=manager.token)
    assert r.status == 200, r.body
    f = r.json
    assert f["team_id"] == manager.team_id
    assert f["created"] == 6 and f["conversions"] == 1
    assert f["conversion_rate"] == round(1 / 6, 4)
    stages = {s["stage"]: s for s in f["stages"]}
    assert stages["new"]["entered"] == 6 and stages["new"]["at_start"] == 0
    assert stages["contacted"]["entered"] == 3 and stages["contacted"]["at_start"] == 1  # warm was contacted
    assert stages["customer"]["at_start"] == 1 and stages["customer"]["entered"] == 1
    assert stages["churned"]["entered"] == 1 and stages["at_risk"]["entered"] == 2
    assert stages["new"]["now"] == 4  # 4 + 2 + late − 3 contacted by a first follow-up (mine[0], mine[1], theirs[0])
    moves = {(m["from"], m["to"]): m for m in f["moves"]}
    assert moves[("new", "contacted")]["count"] == 3 and moves[("new", "contacted")]["rate"] == 0.5
    # in contacted during the period: warm (there at the start) + mine[0], mine[1], theirs[0]; two moved on
    assert moves[("contacted", "qualified")]["base"] == 4 and moves[("contacted", "qualified")]["count"] == 2
    assert moves[("contacted", "lost")]["count"] == 1
    assert moves[("qualified", "customer")]["count"] == 1 and moves[("qualified", "customer")]["rate"] == 0.5
    assert [(m["from"], m["to"]) for m in f["path"]] == [("new", "contacted"), ("contacted", "qualified"), ("qualified", "customer")]

    r = await api.get(LIFECYCLE + period(d1, d2), token=manager.token)
    assert r.status == 200, r.body
    life = r.json
    assert life["customers_at_start"] == 1  # old
    assert life["new_customers"] == 1 and life["into_at_risk"] == 2 and life["churned"] == 1 and life["won_back"] == 0
    assert life["churn_rate"] == 1.0
    assert life["now"] == {"customer": 0, "retained": 1, "at_risk": 0, "won_back": 0, "churned": 1}
    assert life["customers_now"] == 1

    # r1 has an overdue task now.
    clock.at = datetime.now(timezone.utc).replace(microsecond=0)
    r = await api.post("/api/v1/tasks", json={"title": "回访", "due_at": (clock.now() + timedelta(hours=1)).isoformat()}, token=r1.token)
    assert r.status == 201, r.body
    r = await api.get(REPS + period(d1, d2), token=manager.token)
    assert r.json["overdue_counted_at"] is None and all(row["overdue_tasks"] == 0 for row in r.json["items"])  # not counted yet
    clock.advance(hours=2)
    assert (await run_job(ctx, "count_overdue_tasks", clock.now()))["overdue"] == 1
    r = await api.get(REPS + period(d1, d2), token=manager.token)
    assert r.status == 200, r.body
    assert datetime.fromisoformat(r.json["overdue_counted_at"]) == clock.now()
    rows = {row["rep_id"]: row for row in r.json["items"]}
    assert set(rows) == {manager.id, r1.id, r2.id}
    a, b = rows[r1.id], rows[r2.id]
    assert (a["new_leads"], a["followups"], a["visits"], a["conversions"], a["overdue_tasks"]) == (4, 3, 1, 1, 1)
    assert a["conversion_rate"] == 0.25
    assert a["first_responses"] == 2 and a["median_first_response_min"] == 30  # 20 min and 180 min: lower median ≤ 30
    assert (b["new_leads"], b["followups"], b["visits"], b["conversions"], b["overdue_tasks"]) == (2, 1, 1, 0, 0)
    assert b["first_responses"] == 1 and b["median_first_response_min"] == 2880  # 30 h after assignment: the ≤ 2880 min bucket
    assert rows[manager.id]["new_leads"] == 0
    assert late["id"]  # created today: outside the period, never in these figures

    # Admin: all teams, then one.
    r = await api.get(FUNNEL + period(d1, d2), token=admin.token)
    assert r.status == 200 and r.json["team_id"] is None and r.json["created"] == 6
    r = await api.get(FUNNEL + period(d0, d0, team_id=other.team_id), token=admin.token)
    assert r.status == 200 and r.json["created"] == 1
    r = await api.get(REPS + period(d0, d2), token=admin.token)
    assert {row["rep_id"] for row in r.json["items"]} >= {r1.id, r2.id, other.id}


@pytest.mark.gen_test(timeout=60)
async def test_business_day_boundaries_are_shanghai_midnight(api, people, ctx, clock):
    manager, rep = await people.manager(), await people.rep()
    day = today(clock) - timedelta(days=2)
    clock.at = shanghai(day, 23, 59)  # 15:59 UTC: still `day` in Shanghai
    await make_lead(api, rep)
    clock.at = shanghai(day + timedelta(days=1), 0, 1)  # 16:01 UTC on the same UTC day: the next business day
    await make_lead(api, rep)
    clock.at = datetime.now(timezone.utc).replace(microsecond=0)
    await fold(ctx, clock)
    for d1, d2, n in ((day, day, 1), (day + timedelta(days=1), day + timedelta(days=1), 1), (day, day + timedelta(days=1), 2), (day - timedelta(days=1), day - timedelta(days=1), 0)):
        r = await api.get(FUNNEL + period(d1, d2), token=manager.token)
        assert r.status == 200, r.body
        assert r.json["created"] == n, (d1, d2)


@pytest.mark.gen_test(timeout=60)
async def test_periods_over_quiet_days_and_a_fixed_read_cost(api, people, ctx, clock, recorder):
    """Activity on days A and A+3 only: periods that start, end or lie in the quiet days between
    get exact figures, and a report costs the same commands for one day as for 366."""
    manager, rep = await people.manager(), await people.rep()
    a = today(clock) - timedelta(days=10)
    clock.at = shanghai(a, 10, 0)
    first = [await make_lead(api, rep) for _ in range(2)]
    await followup(api, rep, first[0]["id"])
    clock.at = shanghai(a + timedelta(days=3), 10, 0)
    await make_lead(api, rep)
    await followup(api, rep, first[1]["id"], "visit")
    clock.at = datetime.now(timezone.utc).replace(microsecond=0)
    await fold(ctx, clock)

    def day(n: int) -> date:
        return a + timedelta(days=n)

    cases = [((0, 0), 2, 1, 0), ((1, 2), 0, 0, 0), ((1, 3), 1, 1, 1), ((0, 1), 2, 1, 0), ((-5, -1), 0, 0, 0), ((-5, 9), 3, 2, 1), ((4, 9), 0, 0, 0)]
    for (d1, d2), created, followups, visits in cases:
        r = await api.get(REPS + period(day(d1), day(d2)), token=manager.token)
        assert r.status == 200, r.body
        row = next(x for x in r.json["items"] if x["rep_id"] == rep.id)
        assert (row["new_leads"], row["followups"], row["visits"]) == (created, followups, visits), (d1, d2)
        r = await api.get(FUNNEL + period(day(d1), day(d2)), token=manager.token)
        assert r.json["created"] == created, (d1, d2)
        stages = {x["stage"]: x for x in r.json["stages"]}
        # in `new` when the period began: leads created before it, less those contacted (day A, day A+3)
        assert stages["new"]["at_start"] == {0: 0, 1: 1, -5: 0, 4: 1}[d1], (d1, d2)

    # the user, the running totals, then the stage populations (funnel, lifecycle) or the staff and
    # their overdue tasks (reps)
    for report, budget in ((FUNNEL, 3), (REPS, 4), (LIFECYCLE, 3)):
        counts = []
        for d1 in (day(0), today(clock) - timedelta(days=365)):
            with recorder.counting() as cmds:
                r = await api.get(report + period(d1, today(clock)), token=manager.token)
            assert r.status == 200, r.body
            counts.append(len(cmds))
        assert counts[0] == counts[1] <= budget, (report, counts)


@pytest.mark.gen_test(timeout=60)
async def test_scope_and_bad_ranges(api, people):
    manager, rep = await people.manager(), await people.rep()
    theirs = await people.manager(team="华南销售部")
    admin = await people.admin()
    d = date(2026, 11, 1)
    for path in (FUNNEL, REPS, LIFECYCLE):
        r = await api.get(path + period(d, d, team_id=theirs.team_id), token=manager.token)
        assert (r.status, r.error_code) == (404, "report.team_not_found"), path
        r = await api.get(path + period(d, d, team_id=manager.team_id), token=manager.token)
        assert r.status == 200, r.body
        r = await api.get(path + period(d, d), token=rep.token)
        assert r.status == 403, path
        r = await api.get(path + period(d, d, team_id="0" * 24), token=admin.token)
        assert (r.status, r.error_code) == (404, "report.team_not_found")
        r = await api.get(path + period(d, d - timedelta(days=1)), token=manager.token)
        assert (r.status, r.error_code) == (422, "report.bad_range"), path
        r = await api.get(path + period(d, d + timedelta(days=366)), token=manager.token)
        assert (r.status, r.error_code) == (422, "report.bad_range"), path
        r = await api.get(path + period(d, d + timedelta(days=365)), token=manager.token)
        assert r.status == 200, path  # 366 days, inclusive
        for bad in ("?from=2026-13-01&to=2026-12-31", "?from=2026-11-01&to=yesterday", "?to=2026-11-01", "?from=2026/11/01&to=2026-11-02"):
            r = await api.get(path + bad, token=manager.token)
            assert (r.status, r.error_code) == (422, "request.invalid"), (path, bad)
    r = await api.get(RFM + f"?team_id={theirs.team_id}", token=manager.token)
    assert r.status == 404
    r = await api.get(RFM, token=rep.token)
    assert r.status == 403


@pytest.mark.gen_test(timeout=60)
async def test_rfm_layers_scored_from_money_received_by_team_thresholds_and_filterable(api, people, ctx, clock, raw_db):
    """Recency from the latest payment, contract start or follow-up; frequency and monetary from
    the payments received in the team's window; each team's own thresholds."""
    manager, rep = await people.manager(), await people.rep()
    rival = await people.rep(team="华南销售部")
    rival_manager = await people.manager(team="华南销售部")
    admin = await people.admin()
    bosses = (manager, rival_manager, admin)
    day = today(clock)
    now = clock.now()

    def ago(n: int) -> date:
        return day - timedelta(days=n)

    async def signed(owner, lead, amount: int, start: date, years: int = 1) -> dict:
        clock.at = at_shanghai(start)  # signed that day: the lead became a customer then
        c = await sign(api, owner, bosses, lead, amount, start, start.replace(year=start.year + years) - timedelta(days=1))
        clock.at = now
        return c

    a, b, c = await make_lead(api, rep, name="甲"), await make_lead(api, rep, name="乙"), await make_lead(api, rep, name="丙")
    big = await make_lead(api, rep, name="戊")
    ca = await signed(rep, a, 12_000_000, ago(200))
    for n in (200, 60, 10):
        await pay(api, manager, ca, 4_000_000, at_shanghai(ago(n)))  # 3 payments, 120,000 yuan, latest 10 days ago: 3+3+3 = A
    cb = await signed(rep, b, 2_000_000, ago(100))
    await pay(api, manager, cb, 2_000_000, at_shanghai(ago(100)))  # 1 payment, 20,000 yuan, 100 days: 2+2+2 = B
    await signed(rep, c, 500_000, ago(200))  # signed 200 days ago, nothing paid: 1+1+1 = C
    # The case: 1,000,000 yuan over three years, signed 400 days ago, paid in instalments.
    # Scored by contracts started in the last 365 days it was C (1+1+1); by money received it is A.
    cbig = await signed(rep, big, 100_000_000, ago(400), years=3)
    for n in (400, 200, 20):
        await pay(api, manager, cbig, 30_000_000, at_shanghai(ago(n)))  # in the window: 2 payments, 600,000 yuan, 20 days ago: 3+2+3
    far = await make_lead(api, rival, name="丁")
    cfar = await signed(rival, far, 9_000_000, ago(5))
    await pay(api, rival_manager, cfar, 9_000_000, at_shanghai(ago(5)))  # defaults: 3+2+2 = B; the south team's thresholds: A
    raw_db["teams"].update_one({"_id": __import__("bson").ObjectId(rival.team_id)}, {"$set": {"settings": {"rfm": {
        "window_days": 90, "recency_days": [7, 30], "frequency": [1, 1], "monetary_fen": [5_000_000, 1_000_000], "layer_scores": {"A": 9, "B": 6}}}}})
    ctx.users.forget_team_settings(rival.team_id)

    result = await run_job(ctx, "rfm_layers", clock.now())
    assert result["scored"] == 5
    r = await api.get(RFM, token=manager.token)
    assert r.status == 200, r.body
    assert r.json["counts"] == {"A": 2, "B": 1, "C": 1}
    assert r.json["computed_on"] == day.isoformat()
    assert r.json["thresholds"] == {"recency_days": [30, 180], "frequency": [3, 1], "monetary_fen": [10_000_000, 1_000_000], "layer_scores": {"A": 8, "B": 5}, "window_days": 365}
    r = await api.get(RFM, token=rival_manager.token)
    assert r.json["counts"] == {"A": 1, "B": 0, "C": 0} and r.json["thresholds"]["window_days"] == 90
    r = await api.get(RFM, token=admin.token)
    assert r.json["counts"] == {"A": 3, "B": 1, "C": 1}
    for token, layer, names in ((manager.token, "A", {"甲", "戊"}), (manager.token, "B", {"乙"}), (rep.token, "C", {"丙"}), (admin.token, "A", {"甲", "戊", "丁"})):
        r = await api.get(f"{LEADS}?layer={layer}", token=token)
        assert r.status == 200, r.body
        assert {i["name"] for i in r.json["items"]} == names, (layer, r.json["items"])
    assert raw_db["leads"].find_one({"_id": a["id"]})["rfm"] == {"recency_days": 10, "frequency": 3, "monetary_fen": 12_000_000, "score": 9}
    assert raw_db["leads"].find_one({"_id": big["id"]})["rfm"] == {"recency_days": 20, "frequency": 2, "monetary_fen": 60_000_000, "score": 8}
    assert raw_db["leads"].find_one({"_id": c["id"]})["rfm"] == {"recency_days": 200, "frequency": 0, "monetary_fen": 0, "score": 3}
    # Running it again changes nothing.
    assert (await run_job(ctx, "rfm_layers", clock.now()))["changed"] == 0


@pytest.mark.gen_test(timeout=60)
async def test_overdue_counts_per_rep_team_and_company_follow_the_job(api, people, ctx, clock):
    manager, r1, r2 = await people.manager(), await people.rep(), await people.rep()
    south = await people.rep(team="华南销售部")
    admin = await people.admin()
    clock.at = datetime.now(timezone.utc).replace(microsecond=0)
    due = (clock.now() + timedelta(hours=1)).isoformat()
    ids = {}
    for person, n in ((r1, 2), (r2, 1), (south, 3)):
        for i in range(n):
            r = await api.post("/api/v1/tasks", json={"title": f"回访{i}", "due_at": due}, token=person.token)
            assert r.status == 201, r.body
            ids.setdefault(person.id, []).append(r.json)
    clock.advance(hours=2)
    out = await run_job(ctx, "count_overdue_tasks", clock.now())
    assert (out["overdue"], out["teams"]) == (6, 2)
    week = period(today(clock) - timedelta(days=6), today(clock))

    def overdue(body) -> dict:
        return {row["rep_id"]: row["overdue_tasks"] for row in body["items"] if row["overdue_tasks"]}

    r = await api.get(REPS + week, token=manager.token)
    assert overdue(r.json) == {r1.id: 2, r2.id: 1}  # the other team's tasks never show
    r = await api.get(REPS + week, token=admin.token)
    assert overdue(r.json) == {r1.id: 2, r2.id: 1, south.id: 3}

    # Done tasks drop out at the next run; a team with none left has no counts.
    for task in ids[south.id]:
        r = await api.post(f"/api/v1/tasks/{task['id']}/complete", json={"version": task["version"]}, token=south.token)
        assert r.status == 200, r.body
    out = await run_job(ctx, "count_overdue_tasks", clock.now())
    assert (out["overdue"], out["teams"]) == (3, 1)
    r = await api.get(REPS + f"{week}&team_id={south.team_id}", token=admin.token)
    assert overdue(r.json) == {} and r.json["overdue_counted_at"] is None
