"""Return visits (回访) with a frozen clock: a task for the lead's owner N days after a contract
starts and N days before it ends, exactly once per contract and rung across instances; recorded as
a follow-up of kind return_visit with an outcome, which completes the task. And the survey a team
may send after a contract starts."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from jobs.registry import load_jobs, run_job
from leads_kit import LEADS
from server.context import build_context
from surveys_kit import customer_lead

load_jobs()
CONTRACTS = "/api/v1/contracts"
SH = ZoneInfo("Asia/Shanghai")
START, END = date(2027, 1, 1), date(2027, 12, 31)


def at(day: date) -> datetime:
    return datetime.combine(day, time(9, 0), SH)


async def active_contract(api, rep, manager, lead_id: str) -> dict:
    body = {"lead_id": lead_id, "title": "年度服务", "amount_fen": 3_000_000, "start_date": START.isoformat(), "end_date": END.isoformat()}
    r = await api.post(CONTRACTS, json=body, token=rep.token)
    assert r.status == 201, r.body
    r = await api.post(f"{CONTRACTS}/{r.json['id']}/submit", json={"version": r.json["version"]}, token=rep.token)
    r = await api.post(f"{CONTRACTS}/{r.json['id']}/approve", json={"version": r.json["version"]}, token=manager.token)
    assert r.status == 200 and r.json["status"] == "active", r.body
    return r.json


async def run_everywhere(ctx, name: str, day: date) -> None:
    """Two instances at once, then one of them again: every write must be idempotent."""
    other = build_context(ctx.settings, ctx.database, ctx.clock)
    await asyncio.gather(run_job(ctx, name, at(day)), run_job(other, name, at(day)))
    await run_job(ctx, name, at(day))


def visit_tasks(raw_db) -> dict[str, dict]:
    return {t["_id"]: t for t in raw_db.tasks.find({"kind": "return_visit"})}


@pytest.mark.gen_test(timeout=90)
async def test_a_task_after_the_start_and_before_the_end_once_each_completed_by_the_visit(api, ctx, people, wechat, raw_db):
    who = await customer_lead(api, people, wechat[0], raw_db, stage="qualified")
    c = await active_contract(api, who.rep, who.manager, who.lead_id)
    seen: dict[date, set[str]] = {}
    for day in (START + timedelta(days=6), START + timedelta(days=7), START + timedelta(days=8),
                END - timedelta(days=46), END - timedelta(days=45), END - timedelta(days=44)):
        before = set(visit_tasks(raw_db))
        await run_everywhere(ctx, "return_visits", day)
        seen[day] = set(visit_tasks(raw_db)) - before
    after_id, renewal_id = f"return_visit:{c['id']}:after_start", f"return_visit:{c['id']}:before_renewal"
    assert {d: ids for d, ids in seen.items() if ids} == {START + timedelta(days=7): {after_id}, END - timedelta(days=45): {renewal_id}}
    first = visit_tasks(raw_db)[after_id]
    assert first["assignee_id"] == who.rep.id and first["lead_id"] == who.lead_id and first["contract_id"] == c["id"] and first["status"] == "open"
    assert first["due_at"] == datetime.combine(START + timedelta(days=7), time(18, 0), SH)

    # The owner sees it in their tasks.
    r = await api.get("/api/v1/tasks?status=open", token=who.rep.token)
    assert after_id in [t["id"] for t in r.json["items"] if t["kind"] == "return_visit"], r.body

    # Bad input: nothing written.
    path = f"{LEADS}/{who.lead_id}/followups"
    events = raw_db.lead_events.count_documents({"kind": "followup"})
    for body, code in (
        ({"kind": "return_visit", "content": "回访"}, "request.invalid"),  # no outcome
        ({"kind": "call", "content": "电话", "outcome": "satisfied"}, "request.invalid"),  # an outcome on a call
        ({"kind": "return_visit", "content": "回访", "outcome": "great"}, "request.invalid"),
        ({"kind": "return_visit", "content": "回访", "outcome": "satisfied", "task_id": "return_visit:nope:after_start"}, "followup.bad_task"),
    ):
        r = await api.post(path, json=body, token=who.rep.token)
        assert r.status == 422 and r.error_code == code, (body, r.body)
    assert raw_db.lead_events.count_documents({"kind": "followup"}) == events
    assert all(t["status"] == "open" for t in visit_tasks(raw_db).values())

    # The visit, naming its task: recorded with its outcome, and the task is done.
    r = await api.post(path, json={"kind": "return_visit", "content": "客户满意，考虑增购", "outcome": "renewal_interest", "task_id": after_id}, token=who.rep.token)
    assert r.status == 201, r.body
    assert r.json["kind"] == "return_visit" and r.json["outcome"] == "renewal_interest" and r.json["task_id"] == after_id
    tasks = visit_tasks(raw_db)
    assert tasks[after_id]["status"] == "done" and tasks[after_id]["followup_id"] == r.json["id"]
    assert tasks[renewal_id]["status"] == "open"
    # A visit that names no task completes the lead's open return visits.
    r = await api.post(path, json={"kind": "return_visit", "content": "续约前回访", "outcome": "satisfied"}, token=who.rep.token)
    assert r.status == 201, r.body
    assert visit_tasks(raw_db)[renewal_id]["status"] == "done"
    # Later runs create nothing again, done or not.
    await run_everywhere(ctx, "return_visits", END - timedelta(days=30))
    assert len(visit_tasks(raw_db)) == 2


@pytest.mark.gen_test(timeout=90)
async def test_zero_turns_a_rung_off_and_the_contract_survey_is_offered_once(api, ctx, people, wechat, raw_db):
    who = await customer_lead(api, people, wechat[0], raw_db, stage="qualified")
    admin = await people.admin()
    team = f"/api/v1/teams/{who.rep.team_id}"
    version = (await api.get(team, token=admin.token)).json["version"]
    r = await api.patch(f"{team}/settings", json={"version": version, "service": {"return_visit_after_days": 0, "survey_after_contract_days": 10}}, token=admin.token)
    assert r.status == 200, r.body
    c = await active_contract(api, who.rep, who.manager, who.lead_id)
    for day in (START + timedelta(days=7), START + timedelta(days=9)):
        await run_everywhere(ctx, "return_visits", day)
        await run_everywhere(ctx, "contract_surveys", day)
    assert visit_tasks(raw_db) == {} and raw_db.surveys.count_documents({}) == 0
    for day in (START + timedelta(days=10), START + timedelta(days=11)):
        await run_everywhere(ctx, "contract_surveys", day)
    [survey] = raw_db.surveys.find({})
    assert (survey["source"], survey["source_id"], survey["customer_id"], survey["lead_id"]) == ("contract", c["id"], who.person.id, who.lead_id)
    assert raw_db.notifications.count_documents({"kind": "survey_request", "user_id": who.person.id}) == 1
