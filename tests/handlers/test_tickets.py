"""Service tickets (工单) over HTTP: open with dispatch by rule, the conversation, the states, and
every bad input refused with nothing written."""

from __future__ import annotations

import json

import pytest

from leads_kit import LEADS
from tickets_kit import TICKETS, customer_of, open_ticket, service_staff, set_service, ticket_rule, timeline


def _kinds(events: list[dict]) -> list[str]:
    return [e["kind"] for e in events if e["kind"].startswith("ticket_")]


async def _notes(api, person) -> list[dict]:
    r = await api.get("/api/v1/notifications?limit=100", token=person.token)
    assert r.status == 200, r.body
    return r.json["items"]


@pytest.mark.gen_test(timeout=60)
async def test_a_customer_ticket_is_dispatched_by_rule_with_a_reason(api, people, wechat, raw_db, recorder):
    admin, manager, owner = await people.admin(), await people.manager(), await people.rep()
    first, second, bystander = await service_staff(people), await service_staff(people), await service_staff(people)
    rule = await ticket_rule(api, admin, manager.team_id, [first, second], name="故障专线", categories=["fault"])
    customer = await customer_of(api, people, wechat, raw_db, owner, manager)

    with recorder.counting() as cmds:
        ticket = await open_ticket(api, customer, key="ticket-try-0001", priority="high")
    assert len(cmds) <= 11, cmds  # key, lead, ticket, dispatch (rule, turn, members, loads), assignment, events, notification
    assert ticket["status"] == "assigned" and ticket["opened_by"] == "customer" and ticket["lead_id"] == customer.lead_id
    assert ticket["assignee_id"] is None and ticket["assignment"] is None  # staff-only, even on the customer's own ticket
    again = await open_ticket(api, customer, key="ticket-try-0001", priority="high")  # a phone retrying: the same ticket
    assert again["id"] == ticket["id"] and raw_db.tickets.count_documents({}) == 1

    r = await api.get(f"{TICKETS}/{ticket['id']}", token=manager.token, headers={"Accept-Language": "en"})
    assert r.status == 200, r.body
    staff_view = r.json
    assert staff_view["assignee_id"] == first.id
    assert staff_view["assignment"]["rule_id"] == rule["id"] and staff_view["assignment"]["strategy"] == "round_robin"
    assert "故障专线" in staff_view["assignment"]["reason"] and "round-robin" in staff_view["assignment"]["reason"]
    assert staff_view["first_response_due_at"] < staff_view["resolution_due_at"]

    events = await timeline(api, owner, customer.lead_id)
    opened = next(e for e in events if e["kind"] == "ticket_opened")
    assert opened["data"] == {"ticket_id": ticket["id"], "category": "fault", "priority": "high", "title": "设备无法开机", "by": "customer"}
    assigned = next(e for e in events if e["kind"] == "ticket_assigned")
    assert assigned["data"]["assignee_id"] == first.id and assigned["data"]["rule_id"] == rule["id"]
    assert assigned["data"]["strategy"] == "round_robin" and assigned["data"]["previous_assignee_id"] is None and assigned["data"]["escalated"] is False
    assert [n["kind"] for n in await _notes(api, first)] == ["ticket_assigned"]
    assert await _notes(api, bystander) == []

    # The next fault ticket is the second member's turn; another category falls back to the team's service staff.
    nxt = await open_ticket(api, customer)
    assert raw_db.tickets.find_one({"_id": nxt["id"]})["assignee_id"] == second.id
    other = await open_ticket(api, customer, category="invoice", title="发票抬头错了")
    doc = raw_db.tickets.find_one({"_id": other["id"]})
    assert doc["assignee_id"] in (first.id, second.id, bystander.id) and doc["assignment"]["rule_id"] is None


@pytest.mark.gen_test(timeout=60)
async def test_nobody_to_dispatch_to_tells_the_managers_and_a_manager_assigns(api, people, wechat, raw_db):
    manager, owner = await people.manager(), await people.rep()
    customer = await customer_of(api, people, wechat, raw_db, owner, manager)
    ticket = await open_ticket(api, customer)
    assert ticket["status"] == "open"
    assert [n["kind"] for n in await _notes(api, manager)] == ["ticket_unassigned"]

    r = await api.post(f"{TICKETS}/{ticket['id']}/assign", json={"version": ticket["version"]}, token=manager.token)
    assert r.status == 409 and r.json["error"]["code"] == "ticket.nobody_available"
    r = await api.post(f"{TICKETS}/{ticket['id']}/assign", json={"assignee_id": owner.id, "version": ticket["version"]}, token=owner.token)
    assert r.status == 403
    current = raw_db.tickets.find_one({"_id": ticket["id"]})["version"]
    r = await api.post(f"{TICKETS}/{ticket['id']}/assign", json={"assignee_id": owner.id, "version": current}, token=manager.token)
    assert r.status == 200 and r.json["assignee_id"] == owner.id and r.json["status"] == "assigned"
    assert r.json["assignment"]["strategy"] == "manual"
    r = await api.post(f"{TICKETS}/{ticket['id']}/assign", json={"assignee_id": owner.id, "version": current}, token=manager.token)
    assert r.status == 412 and r.json["error"]["code"] == "ticket.version_mismatch"
    assert [n["kind"] for n in await _notes(api, owner)] == ["ticket_assigned"]


@pytest.mark.gen_test(timeout=60)
async def test_the_conversation_states_and_an_internal_reply_never_reaching_the_customer(api, people, wechat, raw_db, recorder):
    manager, owner = await people.manager(), await people.rep()
    handler = await service_staff(people)
    customer = await customer_of(api, people, wechat, raw_db, owner, manager)
    ticket = await open_ticket(api, customer)
    assert raw_db.tickets.find_one({"_id": ticket["id"]})["assignee_id"] == handler.id
    secret = "内部备注：客户上次的退款有争议，别提"

    r = await api.post(f"{TICKETS}/{ticket['id']}/replies", json={"body": secret, "internal": True}, token=handler.token)
    assert r.status == 201 and r.json["internal"] is True
    assert raw_db.tickets.find_one({"_id": ticket["id"]})["status"] == "assigned"  # a note is not a response
    r = await api.post(f"{TICKETS}/{ticket['id']}/replies", json={"body": "您好，请尝试长按电源键十秒"}, token=handler.token)
    assert r.status == 201
    r = await api.post(f"{TICKETS}/{ticket['id']}/replies", json={"body": "试过了，还是不行"}, token=customer.token)
    assert r.status == 201

    with recorder.counting() as cmds:
        r = await api.get(f"{TICKETS}/{ticket['id']}", token=customer.token)
    assert r.status == 200 and len(cmds) <= 3, cmds
    seen = r.json
    assert seen["status"] == "in_progress" and seen["first_response_at"] is not None
    assert [x["body"] for x in seen["replies"]] == ["您好，请尝试长按电源键十秒", "试过了，还是不行"]
    assert seen["replies"][0]["author_id"] is None and seen["replies"][1]["author_id"] == customer.id
    r = await api.get(f"{TICKETS}/{ticket['id']}", token=handler.token)
    assert [x["internal"] for x in r.json["replies"]] == [True, False, False]

    with recorder.counting() as cmds:
        r = await api.get(TICKETS, token=customer.token)
    assert r.status == 200 and len(cmds) <= 2, cmds
    assert [t["id"] for t in r.json["items"]] == [ticket["id"]]
    assert secret not in r.body.decode()
    assert secret not in json.dumps(await _notes(api, customer), ensure_ascii=False)
    assert [n["kind"] for n in await _notes(api, customer)] == ["ticket_customer_update"]  # the public reply only
    events = await timeline(api, owner, customer.lead_id)
    assert secret not in json.dumps(events, ensure_ascii=False)
    replied = [e["data"] for e in events if e["kind"] == "ticket_replied"][::-1]  # the timeline is newest first
    assert [(d["author_role"], d["internal"], d["first_response"]) for d in replied] == [("rep", True, False), ("rep", False, True), ("customer", False, False)]
    assert isinstance(replied[1]["first_response_s"], int) and replied[0]["first_response_s"] is None

    version = raw_db.tickets.find_one({"_id": ticket["id"]})["version"]
    r = await api.post(f"{TICKETS}/{ticket['id']}/resolve", json={"version": version - 1}, token=handler.token)
    assert r.status == 412
    r = await api.post(f"{TICKETS}/{ticket['id']}/resolve", json={"version": version}, token=customer.token)
    assert r.status == 403
    r = await api.post(f"{TICKETS}/{ticket['id']}/resolve", json={"version": version, "note": "更换电源适配器"}, token=handler.token)
    assert r.status == 200 and r.json["status"] == "resolved" and r.json["version"] == version + 1
    lead = raw_db.leads.find_one({"_id": customer.lead_id})
    assert lead["last_activity_at"] is not None and abs((lead["last_activity_at"] - raw_db.tickets.find_one({"_id": ticket["id"]})["resolved_at"]).total_seconds()) < 1
    # The customer is asked to rate it: one survey for this ticket, named so the page can match it.
    pending = (await api.get("/api/v1/surveys?status=pending", token=customer.token)).json["items"]
    assert [(s["source"], s["source_id"]) for s in pending] == [("ticket", ticket["id"])]

    r = await api.post(f"{TICKETS}/{ticket['id']}/reopen", json={"version": version + 1, "reason": "又坏了"}, token=customer.token)
    assert r.status == 200 and r.json["status"] == "in_progress" and r.json["reopen_count"] == 1
    r = await api.post(f"{TICKETS}/{ticket['id']}/close", json={"version": r.json["version"]}, token=customer.token)
    assert r.status == 200 and r.json["status"] == "closed"
    kinds = _kinds(await timeline(api, owner, customer.lead_id))[::-1]
    assert kinds == ["ticket_opened", "ticket_assigned", "ticket_replied", "ticket_replied", "ticket_replied", "ticket_resolved", "ticket_reopened", "ticket_closed"]
    resolved = next(e["data"] for e in await timeline(api, owner, customer.lead_id) if e["kind"] == "ticket_resolved")
    assert resolved["assignee_id"] == handler.id and resolved["breached_first_response"] is False and isinstance(resolved["resolution_s"], int)
    # The reopened ticket flagged the customer at risk (a churn signal).
    assert raw_db.leads.find_one({"_id": customer.lead_id})["stage"] == "at_risk"


@pytest.mark.gen_test(timeout=60)
async def test_staff_open_tickets_for_leads_in_scope_and_list_them_with_filters(api, people, wechat, raw_db, recorder):
    manager, owner, other_rep = await people.manager(), await people.rep(), await people.rep()
    handler = await service_staff(people)
    customer = await customer_of(api, people, wechat, raw_db, owner, manager)
    r = await api.post(TICKETS, json={"category": "consult", "title": "咨询续费", "description": "客户来电咨询"}, token=owner.token)
    assert r.status == 422 and [d["field"] for d in r.json["error"]["details"]] == ["lead_id"]
    r = await api.post(TICKETS, json={"category": "consult", "title": "咨询", "description": "x", "lead_id": customer.lead_id}, token=other_rep.token)
    assert r.status == 404 and r.json["error"]["code"] == "lead.not_found"
    mine = await open_ticket(api, owner, lead_id=customer.lead_id, category="consult", priority="urgent")
    assert mine["opened_by"] == "staff" and mine["customer_id"] is None and mine["assignee_id"] == handler.id
    await open_ticket(api, customer, category="invoice")

    for who, expected in ((owner, 2), (handler, 2), (manager, 2), (other_rep, 0)):
        r = await api.get(TICKETS, token=who.token)
        assert r.status == 200 and len(r.json["items"]) == expected, (who.user["role"], r.body)
    with recorder.counting() as cmds:
        r = await api.get(f"{TICKETS}?priority=urgent&status=assigned&limit=1", token=manager.token)
    assert len(cmds) <= 2, cmds
    assert [t["id"] for t in r.json["items"]] == [mine["id"]]
    r = await api.get(f"{TICKETS}?category=invoice&assignee_id={handler.id}&breached=false", token=handler.token)
    assert len(r.json["items"]) == 1 and r.json["items"][0]["category"] == "invoice"
    r = await api.get(f"{TICKETS}?limit=1", token=manager.token)
    page2 = await api.get(f"{TICKETS}?limit=1&cursor={r.json['next_cursor']}", token=manager.token)
    assert {r.json["items"][0]["id"], page2.json["items"][0]["id"]} == {t["_id"] for t in raw_db.tickets.find()}
    r = await api.get(f"{TICKETS}/categories", token=customer.token, headers={"Accept-Language": "en"})
    assert [c["code"] for c in r.json["items"]] == ["consult", "fault", "complaint", "return", "invoice", "other"]
    assert r.json["items"][2] == {"code": "complaint", "label": "投诉", "label_en": "Complaint"}


@pytest.mark.gen_test(timeout=60)
async def test_bad_input_is_a_clear_4xx_and_writes_nothing(api, people, wechat, raw_db):
    admin, manager, owner = await people.admin(), await people.manager(), await people.rep()
    handler = await service_staff(people)
    customer = await customer_of(api, people, wechat, raw_db, owner, manager)
    stranger = await people.customer(wechat[0])
    base = {"category": "fault", "title": "坏了", "description": "无法开机"}

    def counts() -> tuple[int, int, int, int]:
        return (raw_db.tickets.count_documents({}), raw_db.ticket_replies.count_documents({}),
                raw_db.lead_events.count_documents({"kind": {"$regex": "^ticket_"}}), raw_db.notifications.count_documents({}))

    before = counts()
    for body, field in (({**base, "category": "praise"}, "category"), ({**base, "description": ""}, "description"), ({**base, "description": "   "}, "description"),
                        ({**base, "priority": "asap"}, "priority"), ({**base, "title": "a\x07b"}, "title"), ({**base, "attachments": ["no-such-upload"]}, "attachments")):
        r = await api.post(TICKETS, json=body, token=customer.token)
        assert r.status == 422, (body, r.body)
        assert any(d["field"].startswith(field) for d in r.json["error"]["details"]), r.body
    r = await api.post(TICKETS, json=base, token=stranger.token)  # a customer with no lead of their own
    assert r.status == 409 and r.json["error"]["code"] == "ticket.no_lead"
    assert counts() == before

    ticket = await open_ticket(api, customer)
    before = counts()
    r = await api.post(f"{TICKETS}/{ticket['id']}/replies", json={"body": "我也要内部", "internal": True}, token=customer.token)
    assert r.status == 422 and r.json["error"]["code"] == "ticket.internal_staff_only"
    r = await api.post(f"{TICKETS}/{ticket['id']}/replies", json={"body": ""}, token=handler.token)
    assert r.status == 422
    assert counts() == before

    version = raw_db.tickets.find_one({"_id": ticket["id"]})["version"]
    r = await api.post(f"{TICKETS}/{ticket['id']}/reopen", json={"version": version}, token=customer.token)
    assert r.status == 409 and r.json["error"]["code"] == "ticket.invalid_transition"  # not resolved
    await set_service(api, admin, manager.team_id, reopen_days=0)  # the window closes at the resolution
    r = await api.post(f"{TICKETS}/{ticket['id']}/resolve", json={"version": version}, token=handler.token)
    assert r.status == 200
    before = counts()
    r = await api.post(f"{TICKETS}/{ticket['id']}/reopen", json={"version": version + 1}, token=customer.token)
    assert r.status == 409 and r.json["error"]["code"] == "ticket.reopen_window_passed"
    assert counts() == before and raw_db.tickets.find_one({"_id": ticket["id"]})["status"] == "resolved"

    r = await api.post(f"{TICKETS}/{ticket['id']}/close", json={"version": version + 1}, token=customer.token)
    assert r.status == 200
    before = counts()
    r = await api.post(f"{TICKETS}/{ticket['id']}/replies", json={"body": "还在吗"}, token=customer.token)
    assert r.status == 409 and r.json["error"]["code"] == "ticket.closed"
    r = await api.post(f"{TICKETS}/{ticket['id']}/close", json={"version": version + 2}, token=customer.token)
    assert r.status == 409 and r.json["error"]["code"] == "ticket.closed"
    assert counts() == before
    # The lead, a customer still, was never moved by any of this (a fault ticket is no churn signal).
    r = await api.get(f"{LEADS}/{customer.lead_id}", token=owner.token)
    assert r.json["stage"] == "customer"


@pytest.mark.gen_test(timeout=60)
async def test_hand_over_moves_a_leavers_open_tickets(ctx, api, people, wechat, raw_db):
    admin, manager, owner = await people.admin(), await people.manager(), await people.rep()
    leaver = await service_staff(people)
    customer = await customer_of(api, people, wechat, raw_db, owner, manager)
    tickets = [await open_ticket(api, customer, title=f"问题 {i}") for i in range(3)]
    heir = await service_staff(people)
    from server.actor import Actor

    boss = Actor.from_user(admin.user)
    assert await ctx.tickets.hand_over(leaver.id, heir.id, boss, limit=2) == 2
    assert await ctx.tickets.hand_over(leaver.id, None, boss, limit=10) == 1  # dispatched again: the least loaded is the heir or the leaver
    holders = [raw_db.tickets.find_one({"_id": t["id"]})["assignee_id"] for t in tickets]
    assert holders.count(heir.id) >= 2
    moves = [e["data"] for e in await timeline(api, owner, customer.lead_id) if e["kind"] == "ticket_assigned" and e["data"]["previous_assignee_id"] == leaver.id]
    assert sorted(m["strategy"] for m in moves)[:2] == ["handover", "handover"]
