"""What a newcomer tripped over: an export that one odd lead broke, and jobs' events attributed to
"public" (docs/security.md, "Attribution").

- A lead stored before validation refused control characters (``a\\u0001b``) must not make the
  export answer 500 for everyone who can see it: the file still opens and the lead is in it.
- Events caused by jobs (reclaim, churn, task escalation, the end of a contract) are attributed to
  the system on the timeline, never to "public"; the reasons those jobs write follow
  ``Accept-Language``.
"""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest
from openpyxl import load_workbook

from allocation_kit import ADMIN
from jobs.registry import load_jobs, run_job
from leads_kit import LEADS, make_lead
from server.actor import Actor
from server.schemas.leads import LeadCreate
from server.schemas.users import TeamUpdate
from tasks_kit import create_task, customer_lead, iso, soon

load_jobs()
EXPORT = "/api/v1/leads/export"


async def stored_with_control_characters(ctx, rep) -> dict:
    """A lead as an older release stored it: the service writes what it is given, and
    ``model_construct`` skips the request validation that now refuses such text."""
    actor = Actor(id=rep.id, role="rep", team_id=rep.team_id, name="rep")
    data = LeadCreate.model_construct(
        id=None, name="a\u0001b", phone=None, company="公司\u000b\u0002", email=None, city="北\u001f京",
        tags=["t\u0007"], notes=None, level=None, next_followup_at=None,
    )
    lead, _ = await ctx.leads.create(actor, data)
    return lead


@pytest.mark.gen_test(timeout=60)
async def test_xlsx_export_of_a_name_with_a_control_character_is_200_and_readable(api, people, ctx, raw_db):
    rep = await people.rep()
    manager = await people.manager()
    await stored_with_control_characters(ctx, rep)
    await make_lead(api, rep, name="正常客户")
    assert raw_db.leads.find_one({"name": "a\u0001b"}) is not None
    for person in (rep, manager):
        r = await api.get(f"{EXPORT}?format=xlsx", token=person.token)
        assert r.status == 200, r.body[:300]
        rows = list(load_workbook(io.BytesIO(r.body)).active.iter_rows(values_only=True))
        names = sorted(row[1] for row in rows[1:])
        assert names == ["ab", "正常客户"], names  # the illegal character is dropped, the rest kept
        odd = next(row for row in rows[1:] if row[1] == "ab")
        assert odd[2] == "公司" and "北京" in odd, odd
    r = await api.get(f"{EXPORT}?format=csv", token=rep.token)
    assert r.status == 200
    rows = list(csv.reader(io.StringIO(r.body.decode("utf-8-sig"))))
    assert sorted(row[1] for row in rows[1:]) == ["ab", "正常客户"]


async def timeline(api, person, lead_id: str, language: str = "zh-CN") -> list[dict]:
    r = await api.get(f"{LEADS}/{lead_id}/timeline", token=person.token, headers={"Accept-Language": language})
    assert r.status == 200, r.body
    return r.json["items"]


@pytest.mark.gen_test(timeout=60)
async def test_churn_moves_are_made_by_the_system_and_say_why_in_both_languages(api, people, ctx):
    rep = await people.rep()
    lead = await customer_lead(api, rep, name="沉默客户")
    r = await api.post(f"{LEADS}/{lead['id']}/followups", json={"kind": "call", "content": "回访"}, token=rep.token)
    assert r.status == 201
    await run_job(ctx, "churn_warnings", now=soon(days=91))
    [move] = [e for e in await timeline(api, rep, lead["id"]) if e["kind"] == "stage_changed" and e["data"]["to"] == "at_risk"]
    assert move["actor_role"] == "system" and move["actor_id"] == "system"
    assert "未跟进" in move["data"]["reason"]
    [move_en] = [e for e in await timeline(api, rep, lead["id"], "en") if e["kind"] == "stage_changed" and e["data"]["to"] == "at_risk"]
    assert move_en["data"]["reason"].startswith("no follow-up for 9")


@pytest.mark.gen_test(timeout=60)
async def test_task_escalation_to_at_risk_is_made_by_the_system(api, people, ctx):
    rep = await people.rep()
    lead = await customer_lead(api, rep, name="大客户")
    due = soon(days=1)
    await create_task(api, rep, title="续约洽谈", lead_id=lead["id"], due_at=iso(due))
    result = await run_job(ctx, "send_due_reminders", now=due + timedelta(days=7, minutes=1))
    assert result["flagged"] == 1
    [move] = [e for e in await timeline(api, rep, lead["id"], "en") if e["kind"] == "stage_changed" and e["data"]["to"] == "at_risk"]
    assert move["actor_role"] == "system" and move["actor_id"] == "system"
    assert move["data"]["reason"] == "task overdue 7 days"


@pytest.mark.gen_test(timeout=60)
async def test_reclaim_is_made_by_the_system(api, people, ctx):
    rep = await people.rep()
    team = await ctx.users.get_team(ADMIN, rep.team_id)
    await ctx.users.update_team(ADMIN, rep.team_id, TeamUpdate.model_validate({"reclaim": {"no_followup_days": 7, "warn_days_before": 0}}), team["version"])
    lead = await make_lead(api, rep, name="没人跟")
    await run_job(ctx, "reclaim_stale_leads", now=soon(days=8))
    manager = await people.manager()
    [event] = [e for e in await timeline(api, manager, lead["id"]) if e["kind"] == "reclaimed"]
    assert event["actor_role"] == "system" and event["actor_id"] == "system"


@pytest.mark.gen_test(timeout=60)
async def test_a_contract_that_ends_unrenewed_moves_its_customer_as_the_system(api, people, ctx):
    rep = await people.rep()
    manager = await people.manager()
    lead = await customer_lead(api, rep, name="老客户")
    start = date.today() - timedelta(days=40)
    r = await api.post("/api/v1/contracts", json={
        "lead_id": lead["id"], "title": "年度服务", "amount_fen": 100000,
        "start_date": start.isoformat(), "end_date": (start + timedelta(days=30)).isoformat(),
    }, token=rep.token)
    assert r.status == 201, r.body
    contract = r.json
    r = await api.post(f"/api/v1/contracts/{contract['id']}/submit", json={"version": contract["version"]}, token=rep.token)
    assert r.status == 200, r.body
    r = await api.post(f"/api/v1/contracts/{contract['id']}/approve", json={"version": r.json["version"], "comment": "同意"}, token=manager.token)
    assert r.status == 200, r.body
    await run_job(ctx, "end_contracts", now=soon())
    moves = [e for e in await timeline(api, rep, lead["id"], "en") if e["kind"] == "stage_changed" and e["data"]["to"] == "at_risk"]
    assert len(moves) == 1 and moves[0]["actor_role"] == "system", moves
    assert "with no renewal" in moves[0]["data"]["reason"]
    zh = [e for e in await timeline(api, rep, lead["id"]) if e["kind"] == "stage_changed" and e["data"]["to"] == "at_risk"]
    assert "未续约" in zh[0]["data"]["reason"]


@pytest.mark.gen_test
async def test_public_submissions_stay_public(api, people, ctx, form):
    from capture_kit import answers, submit

    r = await submit(api, {"answers": answers()})
    assert r.status == 201, r.body
    admin = await people.admin()
    [lead] = (await api.get(LEADS, token=admin.token)).json["items"]
    [created] = await timeline(api, admin, lead["id"])
    assert created["kind"] == "created" and created["actor_role"] == "public"
