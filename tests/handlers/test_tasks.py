"""Tasks: create, list, update, complete, scoped like leads; the lead's follow-up task."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from leads_kit import LEADS, make_lead
from miniprogram_stub.wechat_api import PATH_SUBSCRIBE_SEND, Fault
from tasks_kit import NOTIFICATIONS, SUBSCRIPTIONS, TASKS, bound, create_task, inbox, iso, soon


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.mark.gen_test
async def test_task_lifecycle_and_scope(api, people):
    rep = await people.rep()
    other_rep = await people.rep()
    manager = await people.manager()
    far_manager = await people.manager(team="华南销售部")
    admin = await people.admin()
    lead = await make_lead(api, rep, name="张三")
    due = soon(days=2)
    task = await create_task(api, rep, title="送合同", lead_id=lead["id"], due_at=iso(due), remind_at=iso(due - timedelta(hours=2)))
    assert task["status"] == "open" and task["assignee_id"] == rep.id and task["lead_id"] == lead["id"] and task["version"] == 1
    assert _at(task["due_at"]) == due

    for who, sees in ((rep, True), (manager, True), (admin, True), (other_rep, False), (far_manager, False)):
        r = await api.get(TASKS, token=who.token)
        assert r.status == 200, r.body
        assert (task["id"] in [t["id"] for t in r.json["items"]]) is sees
        r = await api.get(f"{TASKS}/{task['id']}", token=who.token)
        assert r.status == (200 if sees else 404)
        if not sees:
            assert r.error_code == "task.not_found"
            r = await api.post(f"{TASKS}/{task['id']}/complete", json={}, token=who.token)
            assert r.status == 404

    r = await api.patch(f"{TASKS}/{task['id']}", json={"title": "送合同并盖章", "version": 1}, token=rep.token)
    assert r.status == 200 and r.json["title"] == "送合同并盖章" and r.json["version"] == 2
    r = await api.patch(f"{TASKS}/{task['id']}", json={"title": "旧版本", "version": 1}, token=rep.token)
    assert r.status == 412 and r.error_code == "task.version_mismatch"

    r = await api.get(f"{TASKS}?status=open&due_before={iso(due + timedelta(minutes=1)).replace('+', '%2B')}", token=rep.token)
    assert [t["id"] for t in r.json["items"]] == [task["id"]]
    r = await api.get(f"{TASKS}?status=open&due_before={iso(due).replace('+', '%2B')}", token=rep.token)
    assert r.json["items"] == []

    r = await api.post(f"{TASKS}/{task['id']}/complete", json={"version": 2}, token=rep.token)
    assert r.status == 200 and r.json["status"] == "done" and r.json["completed_at"]
    again = await api.post(f"{TASKS}/{task['id']}/complete", json={}, token=rep.token)
    assert again.status == 200 and again.json["version"] == r.json["version"]
    r = await api.get(f"{TASKS}?status=done", token=rep.token)
    assert [t["id"] for t in r.json["items"]] == [task["id"]]
    r = await api.get(f"{TASKS}?status=open", token=rep.token)
    assert r.json["items"] == []
    r = await api.patch(f"{TASKS}/{task['id']}", json={"title": "改已完成的", "version": 3}, token=rep.token)
    assert r.status == 409 and r.error_code == "task.closed"


@pytest.mark.gen_test
async def test_list_is_ordered_by_due_time_and_paginates(api, people):
    rep = await people.rep()
    made = [await create_task(api, rep, title=f"任务{i}", due_at=iso(soon(hours=10 - i))) for i in range(5)]
    seen, cursor = [], None
    for _ in range(5):
        r = await api.get(TASKS + "?limit=2" + (f"&cursor={cursor}" if cursor else ""), token=rep.token)
        seen += [t["id"] for t in r.json["items"]]
        cursor = r.json["next_cursor"]
        if not cursor:
            break
    assert seen == [t["id"] for t in reversed(made)]


@pytest.mark.gen_test
@pytest.mark.parametrize("body,field,code", [
    ({"remind_at": "AFTER"}, "remind_at", "task.remind_after_due"),
    ({"due_at": "2026-12-01T09:00:00"}, "due_at", "request.invalid"),
    ({"due_at": None}, "due_at", "request.invalid"),
    ({"title": ""}, "title", "request.invalid"),
    ({"assignee_id": "not-an-id"}, "assignee_id", "request.invalid"),
    ({"owner": "x"}, "owner", "request.invalid"),
])
async def test_bad_tasks_are_refused(api, people, raw_db, body, field, code):
    rep = await people.rep()
    due = soon(days=1)
    payload = {"title": "回访", "due_at": iso(due), **body}
    if payload.get("remind_at") == "AFTER":
        payload["remind_at"] = iso(due + timedelta(minutes=1))
    r = await api.post(TASKS, json=payload, token=rep.token)
    assert r.status == 422, r.body
    assert r.error_code == code
    assert any(field in (d["field"] or "") for d in r.json["error"]["details"]), r.json
    assert raw_db.tasks.count_documents({}) == 0


@pytest.mark.gen_test
async def test_patch_cannot_put_the_reminder_after_the_due_time(api, people):
    rep = await people.rep()
    due = soon(days=1)
    task = await create_task(api, rep, due_at=iso(due), remind_at=iso(due - timedelta(hours=1)))
    r = await api.patch(f"{TASKS}/{task['id']}", json={"due_at": iso(due - timedelta(hours=2)), "version": 1}, token=rep.token)
    assert r.status == 422 and r.error_code == "task.remind_after_due"
    r = await api.get(f"{TASKS}/{task['id']}", token=rep.token)
    assert _at(r.json["due_at"]) == due and r.json["version"] == 1


@pytest.mark.gen_test
async def test_a_lead_outside_your_scope_is_not_found(api, people, raw_db):
    rep = await people.rep()
    other = await people.rep()
    far_manager = await people.manager(team="华南销售部")
    lead = await make_lead(api, other, name="别人的客户")
    for who in (rep, far_manager):
        r = await api.post(TASKS, json={"title": "偷看", "lead_id": lead["id"], "due_at": iso(soon(days=1))}, token=who.token)
        assert r.status == 404 and r.error_code == "lead.not_found"
    r = await api.post(TASKS, json={"title": "不存在", "lead_id": "0123456789abcdef01234567", "due_at": iso(soon(days=1))}, token=rep.token)
    assert r.status == 404
    assert raw_db.tasks.count_documents({}) == 0


@pytest.mark.gen_test
async def test_assignee_must_be_in_your_team(api, people, wechat):
    state, _ = wechat
    manager = await people.manager()
    teammate = await bound(people.ctx, people, state)
    stranger = await people.rep(team="华南销售部")
    r = await api.post(TASKS, json={"title": "跨团队", "assignee_id": stranger.id, "due_at": iso(soon(days=1))}, token=manager.token)
    assert r.status == 422 and r.error_code == "task.bad_assignee"
    assert r.json["error"]["details"][0]["field"] == "assignee_id"
    r = await api.post(TASKS, json={"title": "不存在的人", "assignee_id": "0123456789abcdef01234567", "due_at": iso(soon(days=1))}, token=manager.token)
    assert r.status == 422

    # WeChat is down: creating a task that notifies the assignee neither waits for nor fails on it.
    state.add_fault(Fault(path=PATH_SUBSCRIBE_SEND, status=500, times=5))
    r = await api.post(TASKS, json={"title": "团队内指派", "assignee_id": teammate.id, "due_at": iso(soon(days=1))}, token=manager.token)
    assert r.status == 201 and r.json["assignee_id"] == teammate.id and r.json["team_id"] == manager.team_id
    assert state.calls.get(PATH_SUBSCRIBE_SEND, 0) == 0
    items = await inbox(api, teammate)
    assert [n["kind"] for n in items] == ["task_assigned"] and items[0]["delivery"]["state"] == "pending"
    r = await api.get(TASKS, token=teammate.token)
    assert [t["title"] for t in r.json["items"]] == ["团队内指派"]


@pytest.mark.gen_test
async def test_idempotency_key_creates_one_task(api, people, raw_db):
    rep = await people.rep()
    body = {"title": "弱网重试", "due_at": iso(soon(days=1))}
    headers = {"Idempotency-Key": "task-key-0001"}
    first = await api.post(TASKS, json=body, token=rep.token, headers=headers)
    second = await api.post(TASKS, json=body, token=rep.token, headers=headers)
    assert first.status == second.status == 201 and first.json["id"] == second.json["id"]
    other = await api.post(TASKS, json={**body, "title": "别的"}, token=rep.token, headers=headers)
    assert other.status == 422
    assert raw_db.tasks.count_documents({}) == 1


@pytest.mark.gen_test
async def test_next_followup_keeps_exactly_one_followup_task(api, people, recorder):
    rep = await people.rep()
    lead = await make_lead(api, rep, name="李四")
    first = soon(days=3)
    with recorder.counting() as cmds:
        r = await api.post(f"{LEADS}/{lead['id']}/followups", json={"kind": "call", "content": "初次电话", "next_followup_at": iso(first)}, token=rep.token)
    assert r.status == 201 and len(cmds) <= 5, cmds
    r = await api.get(TASKS, token=rep.token)
    [task] = r.json["items"]
    assert task["id"] == f"followup:{lead['id']}" and task["kind"] == "followup" and task["status"] == "open"
    assert _at(task["due_at"]) == first and task["lead_id"] == lead["id"]

    second = soon(days=5)
    r = await api.post(f"{LEADS}/{lead['id']}/followups", json={"kind": "wechat", "content": "微信沟通", "next_followup_at": iso(second)}, token=rep.token)
    assert r.status == 201
    r = await api.get(TASKS, token=rep.token)
    [task] = r.json["items"]
    assert _at(task["due_at"]) == second and task["status"] == "open"

    # Editing the lead's date moves the task too.
    r = await api.get(f"{LEADS}/{lead['id']}", token=rep.token)
    third = soon(days=6)
    r = await api.patch(f"{LEADS}/{lead['id']}", json={"next_followup_at": iso(third), "version": r.json["version"]}, token=rep.token)
    assert r.status == 200
    r = await api.get(TASKS, token=rep.token)
    [task] = r.json["items"]
    assert _at(task["due_at"]) == third

    # The task follows the lead: it is not edited directly.
    r = await api.patch(f"{TASKS}/{task['id']}", json={"title": "改名", "version": task["version"]}, token=rep.token)
    assert r.status == 409 and r.error_code == "task.managed_by_lead"

    # A follow-up logged without a new date closes it.
    r = await api.post(f"{LEADS}/{lead['id']}/followups", json={"kind": "visit", "content": "上门", "location": {"lat": 39.9, "lng": 116.4}}, token=rep.token)
    assert r.status == 201
    r = await api.get(TASKS + "?status=open", token=rep.token)
    assert r.json["items"] == []
    r = await api.get(TASKS, token=rep.token)
    [task] = r.json["items"]
    assert task["status"] == "done" and task["completed_at"]


@pytest.mark.gen_test
async def test_a_lead_captured_with_a_date_gets_its_followup_task(api, people):
    rep = await people.rep()
    at = soon(days=2)
    lead = await make_lead(api, rep, name="王五", next_followup_at=iso(at))
    r = await api.get(f"{TASKS}/followup:{lead['id']}", token=rep.token)
    assert r.status == 200 and _at(r.json["due_at"]) == at and r.json["assignee_id"] == rep.id


@pytest.mark.gen_test
async def test_listing_notifications_costs_at_most_two_commands(api, people, recorder, ctx):
    rep = await people.rep()
    from server.services.notifications import notification

    await ctx.notifications.notify([notification(rep.id, "task_reminder", f"提醒{i}", "正文", f"test:{i}") for i in range(3)])
    with recorder.counting() as cmds:
        r = await api.get(NOTIFICATIONS + "?unread=true", token=rep.token)
    assert r.status == 200 and len(r.json["items"]) == 3
    assert len(cmds) <= 2, cmds


@pytest.mark.gen_test
async def test_subscriptions_are_counted_per_user_and_template(api, people, wechat):
    state, _ = wechat
    rep = await people.rep()
    customer = await people.customer(state)
    for _ in range(2):
        r = await api.post(SUBSCRIPTIONS, json={"template_id": "tmpl-1", "accepted": True}, token=rep.token)
        assert r.status == 200
    assert r.json == {"template_id": "tmpl-1", "remaining": 2}
    r = await api.post(SUBSCRIPTIONS, json={"template_id": "tmpl-1", "accepted": False}, token=rep.token)
    assert r.json["remaining"] == 2
    r = await api.post(SUBSCRIPTIONS, json={"template_id": "tmpl-1", "accepted": True}, token=customer.token)
    assert r.status == 200 and r.json["remaining"] == 1
    r = await api.post(SUBSCRIPTIONS, json={"template_id": "tmpl-1", "accepted": "yes"}, token=rep.token)
    assert r.status == 422
    r = await api.post(SUBSCRIPTIONS, json={"template_id": "tmpl-1", "accepted": True})
    assert r.status == 401
