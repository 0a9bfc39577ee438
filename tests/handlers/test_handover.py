"""Hand-over when a rep leaves: preview, run and progress, nothing left on the inactive user,
deactivation asking for a hand-over (or the team's pool), bad input answered before any write, and
reminders for someone who left reaching whoever answers for the work now."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from jobs.registry import load_jobs, run_job
from leads_kit import LEADS, make_lead

USERS = "/api/v1/users"


def _iso(days: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(days=days)).isoformat()


async def _poll_done(api, ctx, token: str, handover: dict) -> dict:
    await ctx.handover.wait_idle()
    r = await api.get(f"/api/v1/handovers/{handover['id']}", token=token)
    assert r.status == 200, r.body
    return r.json


async def _rep_with_work(api, people, rep, manager) -> dict:
    """Leads (one with a follow-up date, so a follow-up task), a customer with a pending contract,
    and a manual task."""
    leads = [await make_lead(api, rep, name=f"客户{i}") for i in range(3)]
    r = await api.patch(f"{LEADS}/{leads[0]['id']}", json={"next_followup_at": _iso(2), "version": leads[0]["version"]}, token=rep.token)
    assert r.status == 200, r.body
    r = await api.post("/api/v1/contracts", json={"lead_id": leads[1]["id"], "title": "年度服务", "amount_fen": 100000,
                                                  "start_date": "2027-01-01", "end_date": "2027-12-31"}, token=rep.token)
    assert r.status == 201, r.body
    contract = r.json
    r = await api.post(f"/api/v1/contracts/{contract['id']}/submit", json={"version": contract["version"]}, token=rep.token)
    assert r.status == 200, r.body
    r = await api.post("/api/v1/tasks", json={"title": "回访", "due_at": _iso(1)}, token=rep.token)
    assert r.status == 201, r.body
    return {"leads": leads, "contract": r.json}


def _held_by(raw_db, user_id: str) -> dict:
    return {
        "leads": raw_db.leads.count_documents({"owner_id": user_id}),
        "contracts": raw_db.contracts.count_documents({"owner_id": user_id}),
        "open_tasks": raw_db.tasks.count_documents({"assignee_id": user_id, "status": "open"}),
        "open_tickets": raw_db.tickets.count_documents({"assignee_id": user_id, "status": {"$in": ["open", "assigned", "in_progress"]}}),
    }


@pytest.mark.gen_test(timeout=60)
async def test_preview_then_run_leaves_nothing_on_the_deactivated_rep(api, people, ctx, raw_db):
    admin, manager = await people.admin(), await people.manager()
    rep, heir = await people.rep(name="李雷"), await people.rep(name="韩梅梅")
    await _rep_with_work(api, people, rep, manager)
    body = {"to_user_id": heir.id, "include": ["leads", "contracts", "tasks", "tickets"], "deactivate": True}

    r = await api.post(f"{USERS}/{rep.id}/handover/preview", json=body, token=admin.token)
    assert r.status == 200, r.body
    preview = r.json
    assert preview["counts"]["leads"] == 3 and preview["counts"]["open_leads"] == 3  # a pending contract does not make a customer
    assert preview["counts"]["contracts"] == {"total": 1, "by_status": {"pending": 1}}
    assert preview["counts"]["tasks"] == 1 and preview["counts"]["followup_tasks"] == 1
    assert preview["target"]["user_id"] == heir.id and preview["moves"]["leads"] == 3
    assert _held_by(raw_db, rep.id)["leads"] == 3  # a preview writes nothing

    key = {"Idempotency-Key": "handover-li-lei-1"}
    r = await api.post(f"{USERS}/{rep.id}/handover", json=body, token=admin.token, headers=key)
    assert r.status == 202, r.body
    assert r.json["status"] == "running" and r.headers["Location"] == f"/api/v1/handovers/{r.json['id']}"
    done = await _poll_done(api, ctx, admin.token, r.json)
    again = await api.post(f"{USERS}/{rep.id}/handover", json=body, token=admin.token, headers=key)  # a retry after a lost answer
    assert again.status == 202 and again.json["id"] == done["id"] and again.json["status"] == "done", again.body
    assert raw_db.handovers.count_documents({}) == 1
    assert done["status"] == "done", done
    assert done["progress"]["leads"] == {"total": 3, "done": 3} and done["progress"]["contracts"] == {"total": 1, "done": 1}
    assert done["progress"]["tasks"] == {"total": 1, "done": 1}

    assert _held_by(raw_db, rep.id) == {"leads": 0, "contracts": 0, "open_tasks": 0, "open_tickets": 0}
    assert not raw_db.users.find_one({"_id": rep.user["_id"]})["active"]
    assert _held_by(raw_db, heir.id)["leads"] == 3 and _held_by(raw_db, heir.id)["open_tasks"] == 2
    assert raw_db.users.find_one({"_id": heir.user["_id"]})["open_leads"] == 3
    assert raw_db.users.find_one({"_id": rep.user["_id"]})["open_leads"] == 0
    events = list(raw_db.lead_events.find({"kind": "assigned", "data.handover_id": done["id"]}))
    assert len(events) == 3 and all(e["data"]["previous_owner_id"] == rep.id and e["data"]["strategy"] == "handover" for e in events)
    # the pending approval stays as it was: a manager of the team decides it
    contract = raw_db.contracts.find_one({"owner_id": heir.id})
    assert contract["status"] == "pending" and contract["current_role"] == "manager"
    # the heir hears once what they received
    assert raw_db.notifications.count_documents({"user_id": heir.id, "kind": "handover_received"}) == 1


@pytest.mark.gen_test(timeout=60)
async def test_deactivating_a_user_with_open_work_asks_for_a_hand_over(api, people, raw_db):
    admin, manager = await people.admin(), await people.manager()
    rep = await people.rep()
    await _rep_with_work(api, people, rep, manager)
    r = await api.patch(f"{USERS}/{rep.id}", json={"active": False, "version": rep.user["version"]}, token=admin.token)
    assert r.status == 409 and r.error_code == "user.has_open_work", r.body
    held = {d["field"]: d["value"] for d in r.json["error"]["details"]}
    assert held == {"leads": "3", "contracts": "1", "tasks": "2"}
    assert raw_db.users.find_one({"_id": rep.user["_id"]})["active"]
    # a user with nothing is deactivated as before
    idle = await people.rep()
    r = await api.patch(f"{USERS}/{idle.id}", json={"active": False, "version": idle.user["version"]}, token=admin.token)
    assert r.status == 200 and r.json["active"] is False


@pytest.mark.gen_test(timeout=60)
async def test_pool_setting_sends_open_leads_to_the_pool_and_the_rest_to_the_manager(api, people, ctx, raw_db):
    admin, manager = await people.admin(), await people.manager()
    team = await people.team()
    raw_db.teams.update_one({"_id": raw_db.teams.find_one({"name": "华北销售部"})["_id"]}, {"$set": {"settings": {"handover": {"on_deactivate": "pool"}}}})
    ctx.users.forget_team_settings(team)
    rep = await people.rep()
    await _rep_with_work(api, people, rep, manager)
    r = await api.patch(f"{USERS}/{rep.id}", json={"active": False, "version": rep.user["version"]}, token=admin.token)
    assert r.status == 200 and r.json["active"] is False, r.body
    await ctx.handover.wait_idle()
    assert _held_by(raw_db, rep.id) == {"leads": 0, "contracts": 0, "open_tasks": 0, "open_tickets": 0}
    pooled = list(raw_db.leads.find({"team_id": team, "pool": True}))
    assert len(pooled) == 3  # every lead was open (a pending contract does not make a customer)
    released = raw_db.lead_events.count_documents({"kind": "released", "data.previous_owner_id": rep.id})
    assert released == 3
    assert _held_by(raw_db, manager.id)["contracts"] == 1 and _held_by(raw_db, manager.id)["open_tasks"] == 1
    [handover] = list(raw_db.handovers.find({"from_user_id": rep.id}))
    assert handover["status"] == "done" and handover["pool"]


@pytest.mark.gen_test(timeout=60)
async def test_bad_input_is_refused_with_the_field_named_and_nothing_written(api, people, wechat, raw_db):
    admin, manager = await people.admin(), await people.manager()
    rep, gone, other_team_rep = await people.rep(), await people.rep(active=False), await people.rep(team="华南销售部")
    customer = await people.customer(wechat[0])
    await make_lead(api, rep)
    cases = [
        (admin, {"to_user_id": gone.id}, 422, "handover.bad_target", "to_user_id"),
        (admin, {"to_user_id": rep.id}, 422, "handover.to_self", "to_user_id"),
        (admin, {"to_user_id": customer.id}, 422, "handover.bad_target", "to_user_id"),
        (admin, {"to_user_id": "0" * 24}, 422, "handover.bad_target", "to_user_id"),
        (manager, {"to_user_id": other_team_rep.id}, 422, "handover.bad_target", "to_user_id"),
        (admin, {"to_user_id": other_team_rep.id, "rule_id": "0" * 24}, 422, "request.invalid", None),
        (admin, {}, 422, "request.invalid", None),
        (admin, {"to_user_id": other_team_rep.id, "include": ["leads", "leads"]}, 422, "request.invalid", None),
        (admin, {"to_user_id": other_team_rep.id, "include": ["payments"]}, 422, "request.invalid", "include.0"),
        (manager, {"to_user_id": manager.id, "deactivate": True}, 403, "handover.deactivate_admin_only", None),
    ]
    for who, body, status, code, field in cases:
        for path in ("handover/preview", "handover"):
            r = await api.post(f"{USERS}/{rep.id}/{path}", json=body, token=who.token)
            assert (r.status, r.error_code) == (status, code), (body, r.body)
            if field:
                assert field in [d["field"] for d in r.json["error"]["details"]], r.body
    cases = [  # about the admin's own work
        (admin, {"to_user_id": rep.id, "deactivate": True}, 422, "user.cannot_deactivate_self", "deactivate"),
    ]
    for who, body, status, code, field in cases:
        for path in ("handover/preview", "handover"):
            r = await api.post(f"{USERS}/{admin.id}/{path}", json=body, token=who.token)
            assert (r.status, r.error_code) == (status, code), (body, r.body)
            if field:
                assert field in [d["field"] for d in r.json["error"]["details"]], r.body
    r = await api.post(f"{USERS}/{customer.id}/handover", json={"to_user_id": rep.id}, token=admin.token)
    assert r.status == 422 and r.error_code == "handover.bad_source", r.body
    assert raw_db.handovers.count_documents({}) == 0
    assert raw_db.leads.count_documents({"owner_id": rep.id}) == 1
    # across teams an admin may
    r = await api.post(f"{USERS}/{rep.id}/handover/preview", json={"to_user_id": other_team_rep.id}, token=admin.token)
    assert r.status == 200, r.body


@pytest.mark.gen_test(timeout=60)
async def test_reminders_for_someone_who_left_go_to_the_new_owner_or_the_managers(api, people, ctx, raw_db):
    load_jobs()
    admin, manager = await people.admin(), await people.manager()
    rep, heir = await people.rep(), await people.rep()
    lead = await make_lead(api, rep)
    loose = await make_lead(api, rep)
    await ctx.handover.wait_idle()
    from server.services.notifications import notification

    # Reminders written for the rep (by jobs, before or during the hand-over)...
    await ctx.notifications.notify([
        notification(rep.id, "task_reminder", "待办提醒", "跟进", "t:1", data={"lead_id": lead["id"]}),
        notification(rep.id, "churn_warning", "沉默提醒", "跟进", "t:2", data={"lead_id": loose["id"]}),
        notification(rep.id, "reclaim_warning", "即将回收", "跟进", "t:3", data={}),
    ])
    # ... then the rep leaves: the first lead to the heir, the other released to the pool.
    r = await api.post(f"{LEADS}/{loose['id']}/release", json={"reason": "离职"}, token=rep.token)
    assert r.status == 200, r.body
    r = await api.post(f"{USERS}/{rep.id}/handover", json={"to_user_id": heir.id, "deactivate": True}, token=admin.token)
    assert r.status == 202, r.body
    await ctx.handover.wait_idle()
    await run_job(ctx, "deliver_outbox")
    got = {(n["user_id"], n["dedupe_key"]) for n in raw_db.notifications.find({"data.rerouted_from": rep.id})}
    assert got == {(heir.id, "t:1>" + heir.id), (manager.id, "t:2>" + manager.id), (manager.id, "t:3>" + manager.id)}
    assert {n["delivery"]["state"] for n in raw_db.notifications.find({"user_id": rep.id})} == {"rerouted"}
    await run_job(ctx, "deliver_outbox")  # once only
    assert raw_db.notifications.count_documents({"data.rerouted_from": rep.id}) == 3


@pytest.mark.gen_test(timeout=60)
async def test_hand_over_through_an_allocation_rule(api, people, ctx, raw_db):
    admin, manager = await people.admin(), await people.manager()
    rep, a, b = await people.rep(), await people.rep(name="甲"), await people.rep(name="乙")
    for i in range(4):
        await make_lead(api, rep, name=f"客户{i}")
    r = await api.post("/api/v1/allocation-rules", json={"name": "交接轮转", "team_id": rep.team_id, "strategy": "round_robin", "members": [a.id, b.id]},
                       token=admin.token)
    assert r.status == 201, r.body
    rule = r.json
    r = await api.post(f"{USERS}/{rep.id}/handover", json={"rule_id": rule["id"], "include": ["leads", "contracts"]}, token=manager.token)
    assert r.status == 422 and r.error_code == "handover.rule_leads_only" and r.json["error"]["details"][0]["field"] == "include"
    r = await api.post(f"{USERS}/{rep.id}/handover/preview", json={"rule_id": rule["id"], "include": ["leads"]}, token=manager.token)
    assert r.status == 200 and r.json["target"]["members"] == [a.id, b.id], r.body
    r = await api.post(f"{USERS}/{rep.id}/handover", json={"rule_id": rule["id"], "include": ["leads"]}, token=manager.token)
    assert r.status == 202, r.body
    done = await _poll_done(api, ctx, manager.token, r.json)
    assert done["status"] == "done" and done["progress"]["leads"] == {"total": 4, "done": 4}, done
    assert raw_db.leads.count_documents({"owner_id": rep.id}) == 0
    assert raw_db.leads.count_documents({"owner_id": a.id}) == 2 and raw_db.leads.count_documents({"owner_id": b.id}) == 2
