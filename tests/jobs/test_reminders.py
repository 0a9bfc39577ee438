"""send_due_reminders (reminders and the escalation ladder) and churn_warnings, on a frozen clock."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from jobs.registry import load_jobs, run_job
from leads_kit import LEADS, make_lead
from tasks_kit import TASKS, create_task, customer_lead, inbox, iso, soon

load_jobs()


@pytest.fixture
def settings_overrides() -> dict:
    return {"churn_days_by_level": {"A": 45}}


def _keys(raw_db) -> list[str]:
    return sorted(n["dedupe_key"] for n in raw_db.notifications.find())


async def _run_twice(ctx, raw_db, name, now) -> dict:
    """Run a job twice for the same moment: the second run must add nothing."""
    first = await run_job(ctx, name, now=now)
    keys = _keys(raw_db)
    second = await run_job(ctx, name, now=now)
    assert _keys(raw_db) == keys, "a second run for the same moment notified again"
    assert second.get("notified", 0) == 0
    return first


@pytest.mark.gen_test
async def test_every_rung_of_the_ladder(ctx, api, people, raw_db):
    rep = await people.rep()
    manager = await people.manager()
    far_manager = await people.manager(team="华南销售部")
    lead = await customer_lead(api, rep, name="大客户")
    due = soon(days=1)
    task = await create_task(api, rep, title="续约洽谈", lead_id=lead["id"], due_at=iso(due), remind_at=iso(due - timedelta(hours=3)))

    await _run_twice(ctx, raw_db, "send_due_reminders", due - timedelta(hours=3, minutes=1))
    assert await inbox(api, rep) == []  # nothing is due yet

    await _run_twice(ctx, raw_db, "send_due_reminders", due - timedelta(hours=3) + timedelta(seconds=30))
    [n] = await inbox(api, rep)
    assert n["kind"] == "task_reminder" and n["data"]["rung"] == "remind" and "续约洽谈" in n["title"]

    await _run_twice(ctx, raw_db, "send_due_reminders", due - timedelta(minutes=59))
    rungs = [n["data"]["rung"] for n in await inbox(api, rep)]
    assert rungs == ["due_soon", "remind"]

    await _run_twice(ctx, raw_db, "send_due_reminders", due + timedelta(hours=23))
    assert len(await inbox(api, rep)) == 2  # overdue, but not yet by a day

    await _run_twice(ctx, raw_db, "send_due_reminders", due + timedelta(days=1, minutes=1))
    assert [n["data"]["rung"] for n in await inbox(api, rep)][0] == "overdue"
    assert await inbox(api, manager) == []

    await _run_twice(ctx, raw_db, "send_due_reminders", due + timedelta(days=3, minutes=1))
    assert [n["data"]["rung"] for n in await inbox(api, rep)][0] == "manager"
    [m] = await inbox(api, manager)
    assert m["kind"] == "task_escalated" and m["data"]["task_id"] == task["id"]
    assert await inbox(api, far_manager) == []

    result = await _run_twice(ctx, raw_db, "send_due_reminders", due + timedelta(days=7, minutes=1))
    assert result["flagged"] == 1
    top = (await inbox(api, rep))[0]
    assert top["data"]["rung"] == "at_risk" and top["data"]["suggest"] == "reassign" and top["data"]["lead_flagged"] is True
    assert (await inbox(api, manager))[0]["data"]["suggest"] == "reassign"
    r = await api.get(f"{LEADS}/{lead['id']}", token=rep.token)
    assert r.json["stage"] == "at_risk"
    r = await api.get(f"{LEADS}/{lead['id']}/timeline", token=rep.token)
    assert any(e["kind"] == "stage_changed" and e["data"]["to"] == "at_risk" for e in r.json["items"])

    # The ladder ends: later runs add nothing; a completed task is never reminded.
    before = _keys(raw_db)
    await run_job(ctx, "send_due_reminders", now=due + timedelta(days=30))
    assert _keys(raw_db) == before
    assert len(before) == 7  # remind, due_soon, overdue, manager ×2, at_risk ×2


@pytest.mark.gen_test
async def test_at_risk_rung_only_notifies_when_the_lead_cannot_move(ctx, api, people, raw_db):
    rep = await people.rep()
    lead = await make_lead(api, rep, name="还在谈")
    due = soon(hours=2)
    await create_task(api, rep, title="报价", lead_id=lead["id"], due_at=iso(due))
    result = await run_job(ctx, "send_due_reminders", now=due + timedelta(days=7, minutes=1))
    assert result["flagged"] == 0
    [n] = await inbox(api, rep)  # a task first seen late gets its most relevant rung only
    assert n["data"]["rung"] == "at_risk" and n["data"]["lead_flagged"] is False and n["data"]["suggest"] == "reassign"
    r = await api.get(f"{LEADS}/{lead['id']}", token=rep.token)
    assert r.json["stage"] == "new"


@pytest.mark.gen_test
async def test_completed_and_rescheduled_tasks(ctx, api, people, raw_db):
    rep = await people.rep()
    due = soon(days=1)
    done = await create_task(api, rep, title="已完成", due_at=iso(due))
    moved = await create_task(api, rep, title="改期", due_at=iso(due))
    await api.post(f"{TASKS}/{done['id']}/complete", json={}, token=rep.token)
    await run_job(ctx, "send_due_reminders", now=due - timedelta(minutes=30))
    assert [n["title"] for n in await inbox(api, rep)] == ["待办即将到期：改期"]
    later = due + timedelta(days=2)
    r = await api.patch(f"{TASKS}/{moved['id']}", json={"due_at": iso(later), "version": 1}, token=rep.token)
    assert r.status == 200
    await run_job(ctx, "send_due_reminders", now=due + timedelta(days=1, minutes=1))
    assert len(await inbox(api, rep)) == 1  # the old date's overdue rung is gone
    await run_job(ctx, "send_due_reminders", now=later - timedelta(minutes=30))
    assert [n["title"] for n in await inbox(api, rep)] == ["待办即将到期：改期"] * 2  # reminded again for the new date


def _future_tasks(n: int, start: int, due, assignee: str) -> list[dict]:
    return [
        {"_id": f"bulk-{start + i}", "kind": "manual", "title": f"远期{i}", "lead_id": None, "assignee_id": assignee, "team_id": None,
         "status": "open", "due_at": due, "remind_at": None, "completed_at": None, "version": 1, "created_by": "test",
         "created_at": due, "updated_at": due, "reminders": {"next_at": due - timedelta(hours=1)}}
        for i in range(n)
    ]


@pytest.mark.gen_test(timeout=120)
async def test_reminder_run_cost_does_not_grow_with_future_tasks(ctx, api, people, raw_db, recorder):
    rep = await people.rep()
    far = soon(days=200)
    # Volume setup only: 10,000 not-yet-due tasks are bulk-inserted (insert_many) for speed; the
    # API would take minutes. Every due task below is made through the API.
    raw_db.tasks.insert_many(_future_tasks(10, 0, far, rep.id))
    first_due = soon(days=1)
    await create_task(api, rep, title="第一件", due_at=iso(first_due))
    with recorder.counting() as small:
        await run_job(ctx, "send_due_reminders", now=first_due - timedelta(minutes=30))
    raw_db.tasks.insert_many(_future_tasks(9_990, 10, far, rep.id))
    second_due = first_due + timedelta(hours=2)
    await create_task(api, rep, title="第二件", due_at=iso(second_due))
    with recorder.counting() as large:
        await run_job(ctx, "send_due_reminders", now=second_due - timedelta(minutes=30))
    assert raw_db.tasks.count_documents({}) == 10_002
    assert large == small, (small, large)
    assert [n["title"] for n in await inbox(api, rep)] == ["待办即将到期：第二件", "待办即将到期：第一件"]


@pytest.mark.gen_test
async def test_churn_thresholds(ctx, api, people, raw_db):
    rep = await people.rep()
    plain = await customer_lead(api, rep, name="普通客户")
    vip = await customer_lead(api, rep, name="重点客户", level="A")
    prospect = await make_lead(api, rep, name="未成交")
    for lead in (plain, vip, prospect):
        r = await api.post(f"{LEADS}/{lead['id']}/followups", json={"kind": "call", "content": "回访"}, token=rep.token)
        assert r.status == 201
    start = soon()

    result = await _run_twice(ctx, raw_db, "churn_warnings", start + timedelta(days=29))
    assert result["notified"] == 0

    await _run_twice(ctx, raw_db, "churn_warnings", start + timedelta(days=31))
    items = await inbox(api, rep)
    assert sorted((n["data"]["lead_id"], n["data"]["days"]) for n in items) == sorted([(plain["id"], 30), (vip["id"], 30)])
    assert all(n["kind"] == "churn_warning" and n["data"]["moved"] is False for n in items)

    await _run_twice(ctx, raw_db, "churn_warnings", start + timedelta(days=46))
    r = await api.get(f"{LEADS}/{vip['id']}", token=rep.token)
    assert r.json["stage"] == "at_risk"  # level A: 45 days
    r = await api.get(f"{LEADS}/{vip['id']}/timeline", token=rep.token)
    assert any(e["kind"] == "stage_changed" and e["data"]["to"] == "at_risk" for e in r.json["items"])
    r = await api.get(f"{LEADS}/{plain['id']}", token=rep.token)
    assert r.json["stage"] == "customer"

    await _run_twice(ctx, raw_db, "churn_warnings", start + timedelta(days=61))
    await _run_twice(ctx, raw_db, "churn_warnings", start + timedelta(days=91))
    r = await api.get(f"{LEADS}/{plain['id']}", token=rep.token)
    assert r.json["stage"] == "at_risk"
    got = sorted((n["data"]["lead_id"], n["data"]["days"]) for n in await inbox(api, rep))
    assert got == sorted([(plain["id"], 30), (plain["id"], 60), (plain["id"], 90), (vip["id"], 30), (vip["id"], 45)])
    r = await api.get(f"{LEADS}/{prospect['id']}", token=rep.token)
    assert r.json["stage"] == "contacted"  # not a customer: never warned


@pytest.mark.gen_test
async def test_a_new_followup_starts_a_new_silence_period(ctx, api, people, raw_db):
    rep = await people.rep()
    lead = await customer_lead(api, rep, name="回头客")
    r = await api.post(f"{LEADS}/{lead['id']}/followups", json={"kind": "call", "content": "回访"}, token=rep.token)
    assert r.status == 201, r.body
    start = soon()
    await run_job(ctx, "churn_warnings", now=start + timedelta(days=31))
    assert len(await inbox(api, rep)) == 1
    # A follow-up a month on (follow-ups cannot be logged in the future, so the date is set directly).
    later = start + timedelta(days=32)
    doc = raw_db.leads.find_one({"_id": lead["id"]})
    raw_db.leads.replace_one({"_id": lead["id"]}, {**doc, "last_activity_at": later})  # a replace: nx-27017 $set stores dates as text
    await run_job(ctx, "churn_warnings", now=later + timedelta(days=31))
    assert [n["data"]["days"] for n in await inbox(api, rep)] == [30, 30]


@pytest.mark.gen_test
async def test_a_customer_never_followed_up_is_still_warned_after_going_quiet(ctx, api, people, raw_db):
    """Silence counts from the day a lead became a customer when nobody ever logged a follow-up."""
    load_jobs()
    rep = await people.rep()
    lead = await customer_lead(api, rep, name="签约即沉默")
    assert raw_db.leads.find_one({"_id": lead["id"]}).get("last_activity_at") is not None
    await run_job(ctx, "churn_warnings", now=soon() + timedelta(days=91))
    after = raw_db.leads.find_one({"_id": lead["id"]})
    assert after["stage"] == "at_risk"


@pytest.mark.gen_test
async def test_a_job_run_as_of_a_moment_writes_that_moment(ctx, api, people):
    """``run-job churn_warnings --now T``: the move to at_risk is on the timeline at T, by the system
    (and the owner's warning is of T), not at the moment the job happened to run."""
    rep = await people.rep()
    lead = await customer_lead(api, rep, name="久未联系")
    as_of = soon(days=95)
    result = await run_job(ctx, "churn_warnings", now=as_of)
    assert result["moved"] == 1
    r = await api.get(f"{LEADS}/{lead['id']}/timeline", token=rep.token)
    [move] = [e for e in r.json["items"] if e["kind"] == "stage_changed" and e["data"]["to"] == "at_risk"]
    assert datetime.fromisoformat(move["at"]) == as_of
    assert move["actor_role"] == "system"
    [warning] = await inbox(api, rep)
    assert datetime.fromisoformat(warning["created_at"]) == as_of


@pytest.mark.gen_test
async def test_churn_days_are_the_leads_teams_and_the_rfm_layer_can_drive_them(ctx, api, people, raw_db, recorder):
    """Team 华南 moves silent customers to at_risk after 30 days (warning at 10); team 华北 keeps the
    defaults (warnings 30 and 60, 90 days; level A 45 from the environment); team 西部 lets the RFM
    layer decide: layer C customers go after 20 days, a customer with no layer yet by the default."""
    from team_settings_kit import set_team_settings

    north, south, west = [await people.rep(team=t) for t in ("华北销售部", "华南销售部", "西部销售部")]
    await set_team_settings(ctx, south.team_id, churn={"days": 30, "warning_days": [10]})
    await set_team_settings(ctx, west.team_id, churn={"days_by_layer": {"C": 20}, "warning_days": [15]}, rfm={"drives_churn": True})
    n_lead, s_lead = await customer_lead(api, north, name="华北客户"), await customer_lead(api, south, name="华南客户")
    w_layered, w_plain = await customer_lead(api, west, name="西部C层", level="A"), await customer_lead(api, west, name="西部无层")
    await ctx.leads.record_rfm([(w_layered["id"], "C", {"r": 1, "f": 1, "m": 1})])
    for person, lead in ((north, n_lead), (south, s_lead), (west, w_layered), (west, w_plain)):
        r = await api.post(f"{LEADS}/{lead['id']}/followups", json={"kind": "call", "content": "回访"}, token=person.token)
        assert r.status == 201, r.body
    start = soon()

    def stage(lead) -> str:
        return raw_db.leads.find_one({"_id": lead["id"]})["stage"]

    await _run_twice(ctx, raw_db, "churn_warnings", start + timedelta(days=11))
    assert [n["data"]["days"] for n in await inbox(api, south)] == [10] and await inbox(api, north) == []
    await _run_twice(ctx, raw_db, "churn_warnings", start + timedelta(days=21))
    assert stage(w_layered) == "at_risk" and stage(w_plain) == "customer"  # layer C: 20 days; no layer: the default 90
    first = len(recorder.commands)
    await run_job(ctx, "churn_warnings", now=start + timedelta(days=31))
    assert [e.command_name for e in recorder.commands[first:] if e.command.get(e.command_name) == "teams"] == ["find"]  # every team's settings, once
    assert (stage(s_lead), stage(n_lead)) == ("at_risk", "customer")
    assert [n["data"]["days"] for n in await inbox(api, north)] == [30]
