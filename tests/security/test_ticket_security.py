"""Tickets, probed: another customer's ticket, another team's, forged cursors, operator keys, staff
fields and control characters — every one a clear 4xx (404 for what is not yours) and nothing
written."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from server.paging import encode_cursor
from tickets_kit import TICKETS, customer_of, open_ticket, service_staff

TOP_STR = "~" * 8  # above every ticket id: a forged "before everything" cursor of a newest-first list


def _state(raw_db) -> tuple:
    return (raw_db.tickets.count_documents({}), raw_db.ticket_replies.count_documents({}), sorted((t["_id"], t["version"]) for t in raw_db.tickets.find()),
            raw_db.lead_events.count_documents({"kind": {"$regex": "^ticket_"}}))


@pytest.mark.gen_test(timeout=60)
async def test_customer_a_never_reaches_customer_b(api, people, wechat, raw_db):
    manager, owner = await people.manager(), await people.rep()
    await service_staff(people)
    a = await customer_of(api, people, wechat, raw_db, owner, manager)
    b = await customer_of(api, people, wechat, raw_db, owner, manager)
    ticket = await open_ticket(api, a)
    before = _state(raw_db)
    path = f"{TICKETS}/{ticket['id']}"
    for method, suffix, body in (("GET", "", None), ("POST", "/replies", {"body": "我看看"}), ("POST", "/reopen", {"version": 1}),
                                 ("POST", "/close", {"version": ticket["version"]})):
        r = await api.request(method, path + suffix, json_body=body, token=b.token)
        assert r.status == 404 and r.json["error"]["code"] == "ticket.not_found", (suffix, r.body)
    r = await api.get(f"{TICKETS}?cursor={quote(encode_cursor([TOP_STR]))}&limit=100", token=b.token)
    assert r.status == 200 and r.json["items"] == []
    # B cannot open a ticket on A's lead either: a customer's lead is one of their own.
    r = await api.post(TICKETS, json={"category": "fault", "title": "x", "description": "y", "lead_id": a.lead_id}, token=b.token)
    assert r.status == 404 and r.json["error"]["code"] == "lead.not_found"
    # Nor resolve or assign (staff only).
    for suffix in ("/resolve", "/start", "/assign"):
        r = await api.post(path + suffix, json={"version": ticket["version"]}, token=b.token)
        assert r.status == 403, (suffix, r.body)
    assert _state(raw_db) == before


@pytest.mark.gen_test(timeout=60)
async def test_staff_of_another_team_or_uninvolved_see_nothing(api, people, wechat, raw_db):
    manager, owner = await people.manager(), await people.rep()
    await service_staff(people)
    bystander = await people.rep()  # same team, neither owner nor handler
    far_rep, far_manager = await people.rep(team="华南销售部"), await people.manager(team="华南销售部")
    customer = await customer_of(api, people, wechat, raw_db, owner, manager)
    ticket = await open_ticket(api, customer)
    before = _state(raw_db)
    for person in (bystander, far_rep, far_manager):
        r = await api.get(f"{TICKETS}/{ticket['id']}", token=person.token)
        assert r.status == 404, r.body
        r = await api.post(f"{TICKETS}/{ticket['id']}/replies", json={"body": "hi", "internal": True}, token=person.token)
        assert r.status == 404, r.body
        r = await api.get(f"{TICKETS}?cursor={quote(encode_cursor([TOP_STR]))}&limit=100", token=person.token)
        assert r.json["items"] == [], person.user["role"]
        r = await api.get(f"{TICKETS}?lead_id={customer.lead_id}&assignee_id={owner.id}", token=person.token)
        assert r.json["items"] == []  # filters narrow, never widen
    r = await api.post(f"{TICKETS}/{ticket['id']}/assign", json={"assignee_id": far_rep.id, "version": ticket["version"]}, token=far_manager.token)
    assert r.status == 404
    # A manager of the ticket's team may not hand it to someone of another team.
    r = await api.post(f"{TICKETS}/{ticket['id']}/assign", json={"assignee_id": far_rep.id, "version": raw_db.tickets.find_one()["version"]}, token=manager.token)
    assert r.status == 422 and r.json["error"]["code"] == "ticket.bad_assignee"
    assert _state(raw_db) == before


@pytest.mark.gen_test(timeout=60)
async def test_operator_keys_staff_fields_and_control_characters_are_refused(api, people, wechat, raw_db):
    manager, owner = await people.manager(), await people.rep()
    handler = await service_staff(people)
    customer = await customer_of(api, people, wechat, raw_db, owner, manager)
    ticket = await open_ticket(api, customer)
    before = _state(raw_db)
    base = {"category": "fault", "title": "坏了", "description": "无法开机"}
    for body in ({**base, "category": {"$ne": None}}, {**base, "$where": "1"}, {**base, "lead_id": {"$gt": ""}},
                 {**base, "status": "resolved"}, {**base, "assignee_id": handler.id}, {**base, "customer_id": "x"}, {**base, "version": 9},
                 {**base, "title": "a\x00b"}, {**base, "description": "escape\x1b[31m"}, {**base, "title": "two\nlines"},
                 {**base, "attachments": [{"$ne": None}]}, {**base, "priority": ["urgent"]}):
        r = await api.post(TICKETS, json=body, token=customer.token)
        assert r.status == 422, (body, r.body)
    for body in ({"body": "x\x00"}, {"body": "x", "internal": "yes"}, {"body": {"$ne": None}}):
        r = await api.post(f"{TICKETS}/{ticket['id']}/replies", json=body, token=handler.token)
        assert r.status == 422, (body, r.body)
    for query in ("status[$ne]=closed", "assignee_id=%7B%22%24ne%22%3Anull%7D", "breached=maybe", "limit=1000", "lead_id=a.b", "status=open&status=closed"):
        r = await api.get(f"{TICKETS}?{query}", token=manager.token)
        assert r.status == 422, (query, r.body)
    r = await api.get(f"{TICKETS}?cursor=not-a-cursor", token=manager.token)
    assert r.status == 400 and r.json["error"]["code"] == "request.bad_cursor"
    r = await api.post(f"{TICKETS}/{ticket['id']}/resolve", json={"version": 2**40}, token=handler.token)
    assert r.status == 422
    assert _state(raw_db) == before


@pytest.mark.gen_test(timeout=60)
async def test_attachments_are_served_to_those_who_may_see_the_ticket_and_internal_ones_to_staff(api, people, wechat, raw_db):
    from uploads_kit import image, pdf, upload

    manager, owner = await people.manager(), await people.rep()
    handler = await service_staff(people)
    far_manager = await people.manager(team="华南销售部")
    a = await customer_of(api, people, wechat, raw_db, owner, manager)
    b = await customer_of(api, people, wechat, raw_db, owner, manager)
    photo = (await upload(api, a.person, image())).json["id"]
    ticket = await open_ticket(api, a, attachments=[photo])
    assert [x["id"] for x in ticket["attachments"]] == [photo]
    note = (await upload(api, handler, pdf("internal"), name="memo.pdf", content_type="application/pdf")).json["id"]
    r = await api.post(f"{TICKETS}/{ticket['id']}/replies", json={"body": "内部资料", "internal": True, "attachments": [note]}, token=handler.token)
    assert r.status == 201 and [x["id"] for x in r.json["attachments"]] == [note]
    for person, may_photo, may_note in ((a, True, False), (handler, True, True), (manager, True, True), (b, False, False), (far_manager, False, False)):
        assert (await api.get(f"/api/v1/uploads/{photo}/meta", token=person.token)).status == (200 if may_photo else 404), person.user["role"]
        assert (await api.get(f"/api/v1/uploads/{note}", token=person.token)).status == (200 if may_note else 404), person.user["role"]
    # Someone else's upload cannot be attached: 422 naming attachments, nothing written.
    before = _state(raw_db)
    r = await api.post(TICKETS, json={"category": "fault", "title": "x", "description": "y", "attachments": [photo]}, token=b.token)
    assert r.status == 422 and r.json["error"]["code"] == "upload.unknown" and r.json["error"]["details"][0]["field"].startswith("attachments")
    assert _state(raw_db) == before
