"""The service report over HTTP: tickets made, answered and resolved through the tickets API and
surveys answered by customers; the report's figures equal a recount from the tickets and surveys
documents, per team and per handler, and its cost does not grow with the tickets."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from jobs.registry import load_jobs, run_job
from server.clock import FixedClock, as_utc
from server.services.stats import FRT_BUCKETS_MIN, RES_BUCKETS_H
from surveys_kit import answer, customer_lead

load_jobs()
SH = ZoneInfo("Asia/Shanghai")
SERVICE = "/api/v1/reports/service"
TICKETS = "/api/v1/tickets"


@pytest.fixture
def settings_overrides() -> dict:
    return {"auth_cache_ttl_s": 0}  # every request reads its caller: command counts do not depend on timing


@pytest.fixture
def clock():
    return FixedClock(datetime.now(timezone.utc).replace(microsecond=0))


def shanghai(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), SH).astimezone(timezone.utc)


def day_of(at: datetime) -> date:
    return as_utc(at).astimezone(SH).date()


async def ticket(api, who, manager, handler, clock, *, first_min: int | None, resolve_h: float | None, scores: tuple[int, int] | None = None, ctx=None) -> dict:
    """A customer's ticket, assigned to ``handler``; first answered after ``first_min`` minutes,
    resolved ``resolve_h`` hours after it was opened, then rated."""
    opened = clock.now()
    r = await api.post(TICKETS, json={"category": "fault", "title": "设备故障", "description": "开不了机"}, token=who.person.token)
    assert r.status == 201, r.body
    t = r.json
    r = await api.get(f"{TICKETS}/{t['id']}", token=manager.token)
    r = await api.post(f"{TICKETS}/{t['id']}/assign", json={"assignee_id": handler.id, "version": r.json["version"]}, token=manager.token)
    assert r.status == 200, r.body
    if first_min is not None:
        clock.at = opened + timedelta(minutes=first_min)
        r = await api.post(f"{TICKETS}/{t['id']}/replies", json={"body": "我们马上处理"}, token=handler.token)
        assert r.status == 201, r.body
    if resolve_h is not None:
        clock.at = opened + timedelta(hours=resolve_h)
        r = await api.get(f"{TICKETS}/{t['id']}", token=handler.token)
        r = await api.post(f"{TICKETS}/{t['id']}/resolve", json={"version": r.json["version"]}, token=handler.token)
        assert r.status == 200, r.body
        if scores is not None:
            survey = await ctx.surveys.offer(lead_id=who.lead_id, customer_id=who.person.id, team_id=who.rep.team_id, source="ticket",
                                             source_id=t["id"], now=clock.now())  # the one TicketService made on resolve, or a new one
            r = await answer(api, who, survey["_id"], csat=scores[0], nps=scores[1])
            assert r.status == 200, r.body
    clock.at = opened
    return t


def bound(values: list[float], bounds: tuple) -> int | None:
    """The lower median's bucket bound (None: none, or slower than the last bound)."""
    if not values:
        return None
    median = sorted(values)[(len(values) + 1) // 2 - 1]
    return next((b for b in bounds if median <= b), None)


def recount(tickets: list[dict], surveys: list[dict], events: list[dict], d1: date, d2: date, *, team: str | None = None, handler: str | None = None) -> dict:
    """The report's figures counted from the documents themselves."""
    def within(at) -> bool:
        return at is not None and d1 <= day_of(at) <= d2

    mine = [t for t in tickets if (team is None or t["team_id"] == team) and (handler is None or t.get("assignee_id") == handler)]
    resolved = [t for t in mine if within(t.get("resolved_at"))]
    first = [t for t in mine if within(t.get("first_response_at"))]
    rated = [s for s in surveys if s["status"] == "answered" and within(s["answered_at"]) and (team is None or s["team_id"] == team)
             and (handler is None or s["handler_id"] == handler)]
    assigned = [e for e in events if e["kind"] == "ticket_assigned" and within(e["at"]) and (handler is None or e["data"]["assignee_id"] == handler)
                and (team is None or any(t["_id"] == e["data"]["ticket_id"] for t in mine))]
    promoters, detractors = sum(s["nps"] >= 9 for s in rated), sum(s["nps"] <= 6 for s in rated)
    breached = sum(bool(t.get("breached")) for t in resolved)
    return {
        "tickets_opened": None if handler else sum(within(t["created_at"]) for t in mine),
        "tickets_assigned": len(assigned),
        "tickets_resolved": len(resolved),
        "first_responses": len(first),
        "median_first_response_min": bound([int((as_utc(t["first_response_at"]) - as_utc(t["created_at"])).total_seconds()) / 60 for t in first], FRT_BUCKETS_MIN),
        "median_resolution_h": bound([int((as_utc(t["resolved_at"]) - as_utc(t["created_at"])).total_seconds()) / 3600 for t in resolved], RES_BUCKETS_H),
        "resolved_breached": breached,
        "sla_breach_rate": round(breached / len(resolved), 4) if resolved else None,
        "surveys_answered": len(rated),
        "csat_avg": round(sum(s["csat"] for s in rated) / len(rated), 2) if rated else None,
        "nps": round((promoters - detractors) * 100 / len(rated), 1) if rated else None,
    }


def figures_of(row: dict) -> dict:
    return {k: row[k] for k in ("tickets_opened", "tickets_assigned", "tickets_resolved", "first_responses", "median_first_response_min",
                                "median_resolution_h", "resolved_breached", "sla_breach_rate", "surveys_answered", "csat_avg", "nps")}


@pytest.mark.gen_test(timeout=120)
async def test_the_figures_equal_a_recount_from_the_tickets_and_surveys(api, ctx, people, wechat, raw_db, clock, recorder):
    state = wechat[0]
    admin = await people.admin()
    north_mgr = await people.manager()
    h1, h2 = await people.rep(), await people.rep()
    h3 = await people.rep(team="华南销售部")
    south_mgr = await people.manager(team="华南销售部")
    a = await customer_lead(api, people, state, raw_db, rep=h1, manager=north_mgr)
    b = await customer_lead(api, people, state, raw_db, rep=h2, manager=north_mgr)
    c = await customer_lead(api, people, state, raw_db, team="华南销售部", slug="expo-south", rep=h3, manager=south_mgr)
    today = clock.now().astimezone(SH).date()
    d0, d1, d2 = today - timedelta(days=4), today - timedelta(days=3), today - timedelta(days=2)

    clock.at = shanghai(d0, 10)  # before the period: never counted
    await ticket(api, a, north_mgr, h1, clock, first_min=5, resolve_h=1, scores=(1, 0), ctx=ctx)
    clock.at = shanghai(d1, 9)
    await ticket(api, a, north_mgr, h1, clock, first_min=20, resolve_h=3, scores=(5, 10), ctx=ctx)
    clock.at = shanghai(d1, 10)
    await ticket(api, a, north_mgr, h1, clock, first_min=190, resolve_h=30, scores=(4, 9), ctx=ctx)  # resolved the next day
    clock.at = shanghai(d1, 11)
    await ticket(api, b, north_mgr, h2, clock, first_min=10, resolve_h=1.5, scores=(2, 3), ctx=ctx)
    clock.at = shanghai(d1, 12)
    await ticket(api, b, north_mgr, h2, clock, first_min=50, resolve_h=None)  # still open
    clock.at = shanghai(d2, 9)
    await ticket(api, b, north_mgr, h1, clock, first_min=None, resolve_h=2, scores=(3, 7), ctx=ctx)  # resolved without a reply
    clock.at = shanghai(d2, 10)
    await ticket(api, c, south_mgr, h3, clock, first_min=15, resolve_h=4, scores=(4, 8), ctx=ctx)
    clock.at = shanghai(d2 + timedelta(days=1), 10)  # after the period
    await ticket(api, c, south_mgr, h3, clock, first_min=15, resolve_h=4, scores=(5, 10), ctx=ctx)
    clock.at = datetime.now(timezone.utc).replace(microsecond=0)
    assert "skipped" not in await run_job(ctx, "fold_stats", clock.now())

    tickets = list(raw_db.tickets.find({}))
    surveys = list(raw_db.surveys.find({}))
    events = list(raw_db.lead_events.find({"kind": {"$regex": "^ticket_"}}))
    assert len(tickets) == 8 and sum(s["status"] == "answered" for s in surveys) == 7
    north, south = h1.team_id, h3.team_id
    q = f"?from={d1.isoformat()}&to={d2.isoformat()}"

    r = await api.get(SERVICE + q, token=north_mgr.token)
    assert r.status == 200, r.body
    report = r.json
    assert report["team_id"] == north and [t["team_id"] for t in report["teams"]] == [north]
    expected = recount(tickets, surveys, events, d1, d2, team=north)
    assert figures_of(report["totals"]) == expected and expected["tickets_opened"] == 5 and expected["surveys_answered"] == 4
    handlers = {h["handler_id"]: h for h in report["handlers"]}
    assert set(handlers) == {h1.id, h2.id}
    for h in (h1, h2):
        assert figures_of(handlers[h.id]) == recount(tickets, surveys, events, d1, d2, team=north, handler=h.id), h.id
    assert handlers[h1.id]["name"] == h1.user["name"]

    r = await api.get(SERVICE + q, token=admin.token)  # the company, per team
    assert r.status == 200, r.body
    company = r.json
    assert company["team_id"] is None and figures_of(company["totals"]) == recount(tickets, surveys, events, d1, d2)
    teams = {t["team_id"]: t for t in company["teams"]}
    for team in (north, south):
        assert figures_of(teams[team]) == recount(tickets, surveys, events, d1, d2, team=team), team
    assert {h["handler_id"] for h in company["handlers"]} == {h1.id, h2.id, h3.id}

    # Scope like the other reports: another team is 404 for a manager, reps get 403.
    r = await api.get(SERVICE + q + f"&team_id={south}", token=north_mgr.token)
    assert r.status == 404 and r.error_code == "report.team_not_found"
    r = await api.get(SERVICE + q, token=h1.token)
    assert r.status == 403
    r = await api.get(f"{SERVICE}?from={d2.isoformat()}&to={d1.isoformat()}", token=admin.token)
    assert r.status == 422 and r.error_code == "report.bad_range"

    # The cost does not grow with the tickets: the same commands with twice as many.
    with recorder.counting() as before:
        await api.get(SERVICE + q, token=admin.token)
    for n in range(6):
        clock.at = shanghai(d1, 13, n)
        await ticket(api, b, north_mgr, h2, clock, first_min=30, resolve_h=2, ctx=ctx)
    clock.at = datetime.now(timezone.utc).replace(microsecond=0)
    await run_job(ctx, "fold_stats", clock.now())
    with recorder.counting() as after:
        r = await api.get(SERVICE + q, token=admin.token)
    assert before == after and len(after) <= 4, after  # the caller, the teams, the running totals, the handlers' names
    fresh = (list(raw_db.tickets.find({})), list(raw_db.surveys.find({})), list(raw_db.lead_events.find({"kind": {"$regex": "^ticket_"}})))
    assert figures_of(r.json["totals"]) == recount(*fresh, d1, d2) and r.json["totals"]["tickets_resolved"] == company["totals"]["tickets_resolved"] + 6
