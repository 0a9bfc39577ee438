"""Contract jobs with a frozen clock: renewal reminders, contracts that end, payment reminders."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from jobs.registry import load_jobs, run_job
from leads_kit import LEADS, make_lead
from server.context import build_context

CONTRACTS = "/api/v1/contracts"
SH = ZoneInfo("Asia/Shanghai")


def at(day: date) -> datetime:
    return datetime.combine(day, time(9, 0), SH)


async def active_contract(api, rep, manager, **extra) -> dict:
    lead = await make_lead(api, rep)
    body = {"lead_id": lead["id"], "title": "年度服务", "amount_fen": 3_000_000, "start_date": "2027-01-01", "end_date": "2027-12-31", **extra}
    r = await api.post(CONTRACTS, json=body, token=rep.token)
    assert r.status == 201, r.body
    r = await api.post(f"{CONTRACTS}/{r.json['id']}/submit", json={"version": r.json["version"]}, token=rep.token)
    r = await api.post(f"{CONTRACTS}/{r.json['id']}/approve", json={"version": r.json["version"]}, token=manager.token)
    assert r.status == 200 and r.json["status"] == "active", r.body
    return r.json


def sent(raw_db, kind: str) -> list[dict]:
    return list(raw_db.notifications.find({"kind": kind}))


@pytest.mark.gen_test(timeout=60)
async def test_renewal_reminders_fire_on_the_right_days_exactly_once(api, people, ctx, raw_db):
    load_jobs()
    rep, manager = await people.rep(), await people.manager()
    c = await active_contract(api, rep, manager)
    other_ctx = build_context(ctx.settings, ctx.database, ctx.clock)  # a second instance
    end = date(2027, 12, 31)
    fired: dict[int, set[str]] = {}
    for left in range(40, -1, -1):
        now = at(end - timedelta(days=left))
        before = {n["dedupe_key"] for n in sent(raw_db, "renewal_due")}
        await asyncio.gather(run_job(ctx, "renewal_reminders", now), run_job(other_ctx, "renewal_reminders", now))
        await run_job(ctx, "renewal_reminders", now)  # and once more, later
        new = {n["dedupe_key"] for n in sent(raw_db, "renewal_due")} - before
        if new:
            fired[left] = new
    assert sorted(fired, reverse=True) == [30, 15, 7, 1]
    assert fired[30] == {f"renewal:{c['id']}:30:{rep.id}"}
    assert fired[15] == {f"renewal:{c['id']}:15:{rep.id}"}
    assert fired[7] == {f"renewal:{c['id']}:7:{rep.id}", f"renewal:{c['id']}:7:{manager.id}"}  # the manager from 7 days
    assert fired[1] == {f"renewal:{c['id']}:1:{rep.id}", f"renewal:{c['id']}:1:{manager.id}"}
    assert len(sent(raw_db, "renewal_due")) == 6


@pytest.mark.gen_test(timeout=60)
async def test_a_missed_run_sends_the_latest_reminder_once_and_an_active_renewal_silences_them(api, people, ctx, raw_db):
    load_jobs()
    rep, manager = await people.rep(), await people.manager()
    c = await active_contract(api, rep, manager)
    await run_job(ctx, "renewal_reminders", at(date(2027, 12, 20)))  # 11 days left: the 15-day one, late
    await run_job(ctx, "renewal_reminders", at(date(2027, 12, 21)))
    assert [n["dedupe_key"] for n in sent(raw_db, "renewal_due")] == [f"renewal:{c['id']}:15:{rep.id}"]
    r = await api.post(f"{CONTRACTS}/{c['id']}/renew", token=rep.token)
    r = await api.post(f"{CONTRACTS}/{r.json['id']}/submit", json={"version": r.json["version"]}, token=rep.token)
    r = await api.post(f"{CONTRACTS}/{r.json['id']}/approve", json={"version": r.json["version"]}, token=manager.token)
    assert r.json["status"] == "active"
    await run_job(ctx, "renewal_reminders", at(date(2027, 12, 25)))
    assert len(sent(raw_db, "renewal_due")) == 1
    # it ends, but it was renewed: the customer stays retained
    await run_job(ctx, "end_contracts", at(date(2028, 1, 1)))
    assert (await api.get(f"{LEADS}/{c['lead_id']}", token=rep.token)).json["stage"] == "retained"
    assert (await api.get(f"{CONTRACTS}/{c['id']}", token=rep.token)).json["status"] == "ended"


@pytest.mark.gen_test(timeout=60)
async def test_a_contract_that_ends_without_renewal_puts_the_customer_at_risk_once(api, people, ctx, raw_db):
    load_jobs()
    rep, manager = await people.rep(), await people.manager()
    c = await active_contract(api, rep, manager)
    await run_job(ctx, "end_contracts", at(date(2027, 12, 31)))  # its last day: still active
    assert (await api.get(f"{LEADS}/{c['lead_id']}", token=rep.token)).json["stage"] == "customer"
    other_ctx = build_context(ctx.settings, ctx.database, ctx.clock)
    await asyncio.gather(run_job(ctx, "end_contracts", at(date(2028, 1, 1))), run_job(other_ctx, "end_contracts", at(date(2028, 1, 1))))
    await run_job(ctx, "end_contracts", at(date(2028, 1, 2)))
    assert (await api.get(f"{LEADS}/{c['lead_id']}", token=rep.token)).json["stage"] == "at_risk"
    assert raw_db.lead_events.count_documents({"lead_id": c["lead_id"], "kind": "stage_changed", "data.to": "at_risk"}) == 1
    assert (await api.get(f"{CONTRACTS}/{c['id']}", token=rep.token)).json["status"] == "ended"


@pytest.mark.gen_test(timeout=60)
async def test_payment_reminders_before_and_after_the_due_date_once_each(api, people, ctx, raw_db):
    load_jobs()
    rep, manager = await people.rep(), await people.manager()
    plan = [{"due_date": "2027-03-01", "amount_fen": 1_000_000}, {"due_date": "2027-09-01", "amount_fen": 2_000_000}]
    c = await active_contract(api, rep, manager, payment_plan=plan)
    due = date(2027, 3, 1)
    fired: dict[int, set[str]] = {}
    for offset in range(-6, 33):
        now = at(due + timedelta(days=offset))
        before = {n["dedupe_key"] for n in sent(raw_db, "payment_due")}
        await run_job(ctx, "payment_reminders", now)
        await run_job(ctx, "payment_reminders", now)
        new = {n["dedupe_key"] for n in sent(raw_db, "payment_due")} - before
        if new:
            fired[offset] = new
    key = f"payment:{c['id']}:1"
    assert fired == {-3: {f"{key}:before3"}, 1: {f"{key}:overdue1"}, 7: {f"{key}:overdue7"}, 30: {f"{key}:overdue30"}}
    assert all(n["user_id"] == rep.id for n in sent(raw_db, "payment_due"))
    # paid in full: the second instalment is never chased
    r = await api.post(f"{CONTRACTS}/{c['id']}/payments", token=manager.token,
                       json={"amount_fen": 3_000_000, "received_at": datetime.now(timezone.utc).isoformat(), "method": "wechat_pay", "reference": "全款"})
    assert r.status == 201 and r.json["paid"] is True
    await run_job(ctx, "payment_reminders", at(date(2027, 9, 2)))
    assert len(sent(raw_db, "payment_due")) == 4


@pytest.mark.gen_test(timeout=60)
async def test_renewal_and_payment_reminders_follow_the_contracts_team(api, people, ctx, raw_db, recorder):
    """Team 华南 reminds of renewals only 10 days before, tells its managers from 3 days, reminds of
    payments 5 days before and after 2 days overdue; team 华北 keeps the defaults (30/15/7/1, the
    managers from 7, 3 days before, overdue 1/7/30)."""
    from team_settings_kit import set_team_settings

    load_jobs()
    n_rep, n_manager = await people.rep(team="华北销售部"), await people.manager(team="华北销售部")
    s_rep, s_manager = await people.rep(team="华南销售部"), await people.manager(team="华南销售部")
    await set_team_settings(ctx, s_rep.team_id, reminders={"renewal_days": [10], "renewal_manager_days": 3, "payment_days_before": 5, "payment_overdue_days": [2]})
    plan = [{"due_date": "2027-03-01", "amount_fen": 3_000_000}]
    north, south = await active_contract(api, n_rep, n_manager, payment_plan=plan), await active_contract(api, s_rep, s_manager, payment_plan=plan)
    end = date(2027, 12, 31)
    fired: dict[int, set[str]] = {}
    for left in (30, 15, 10, 7, 3, 1):
        before = {n["dedupe_key"] for n in sent(raw_db, "renewal_due")}
        first = len(recorder.commands)
        await run_job(ctx, "renewal_reminders", at(end - timedelta(days=left)))
        assert [e.command_name for e in recorder.commands[first:] if e.command.get(e.command_name) == "teams"] == ["find"]  # every team's settings, once
        fired[left] = {n["dedupe_key"] for n in sent(raw_db, "renewal_due")} - before
    s, n = south["id"], north["id"]
    assert fired == {
        30: {f"renewal:{n}:30:{n_rep.id}"}, 15: {f"renewal:{n}:15:{n_rep.id}"}, 10: {f"renewal:{s}:10:{s_rep.id}"},
        7: {f"renewal:{n}:7:{n_rep.id}", f"renewal:{n}:7:{n_manager.id}"},
        3: {f"renewal:{s}:10:{s_manager.id}"},  # 华南's managers from 3 days: told with the latest reminder, once
        1: {f"renewal:{n}:1:{n_rep.id}", f"renewal:{n}:1:{n_manager.id}"},
    }
    due = date(2027, 3, 1)
    payments: dict[int, set[str]] = {}
    for offset in (-5, -3, 1, 2, 7):
        before = {d["dedupe_key"] for d in sent(raw_db, "payment_due")}
        await run_job(ctx, "payment_reminders", at(due + timedelta(days=offset)))
        payments[offset] = {d["dedupe_key"] for d in sent(raw_db, "payment_due")} - before
    assert payments == {-5: {f"payment:{s}:1:before5"}, -3: {f"payment:{n}:1:before3"}, 1: {f"payment:{n}:1:overdue1"},
                        2: {f"payment:{s}:1:overdue2"}, 7: {f"payment:{n}:1:overdue7"}}
