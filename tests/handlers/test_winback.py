"""Win-back (挽回): a churned customer who comes back (a form submitted again, or a new contract)
is flagged, the owner is told once and given a suggested task, the lead is on ``GET
/leads?winback=true`` (scoped, cursor-paginated), and moving it to won_back takes it off."""

from __future__ import annotations

import pytest

from capture_kit import PHONE, answers, submit
from leads_kit import LEADS, make_lead, walk


async def move(api, person, lead_id: str, to: str, **body):
    r = await api.get(f"{LEADS}/{lead_id}", token=person.token)
    r = await api.post(f"{LEADS}/{lead_id}/stage", json={"to": to, "version": r.json["version"], **body}, token=person.token)
    assert r.status == 200, r.body
    return r.json


async def churned(api, rep, **fields) -> dict:
    lead = await make_lead(api, rep, **fields)
    for to in ("contacted", "qualified", "customer", "at_risk"):
        await move(api, rep, lead["id"], to)
    return await move(api, rep, lead["id"], "churned", reason_code="price")


@pytest.mark.gen_test(timeout=60)
async def test_a_churned_customer_submitting_again_is_on_the_owners_winback_list_once(api, people, form, raw_db):
    rep = await people.rep(name="李雷")
    lead = await churned(api, rep, name="回头客", phone=PHONE)
    quiet = await churned(api, rep, name="没回来")
    r = await api.get(f"{LEADS}?winback=true", token=rep.token)
    assert r.status == 200 and r.json["items"] == [], r.body

    for _ in range(2):  # comes back twice: flagged, told and given a task once
        r = await submit(api, {"answers": answers()})
        assert r.status == 201, r.body
    listed = await walk(api, rep.token, f"{LEADS}?winback=true&limit=1")
    assert [x["id"] for x in listed] == [lead["id"]] and listed[0]["winback_candidate"] is True
    assert quiet["id"] in {x["id"] for x in await walk(api, rep.token, f"{LEADS}?winback=false")}
    notes = list(raw_db.notifications.find({"kind": "winback"}))
    assert [n["user_id"] for n in notes] == [rep.id] and notes[0]["data"]["lead_id"] == lead["id"]
    r = await api.get("/api/v1/tasks", token=rep.token)
    tasks = [t for t in r.json["items"] if t["lead_id"] == lead["id"]]
    assert len(tasks) == 1 and tasks[0]["title"] == "挽回客户 回头客" and tasks[0]["status"] == "open"

    r = await api.get(f"{LEADS}/{lead['id']}", token=rep.token)
    r = await api.post(f"{LEADS}/{lead['id']}/stage", json={"to": "won_back", "version": r.json["version"]}, token=rep.token)
    assert r.status == 200 and r.json["winback_candidate"] is False, r.body
    r = await api.get(f"{LEADS}?winback=true", token=rep.token)
    assert r.json["items"] == []


@pytest.mark.gen_test(timeout=60)
async def test_a_new_contract_brings_one_back_and_without_an_owner_the_managers_are_told(api, people, raw_db):
    rep, manager = await people.rep(), await people.manager()
    lead = await churned(api, rep, name="签新合同")
    r = await api.post(f"{LEADS}/{lead['id']}/release", json={"reason": "转给公海"}, token=rep.token)
    assert r.status == 200, r.body
    body = {"lead_id": lead["id"], "title": "再次合作", "amount_fen": 100000, "start_date": "2027-01-01", "end_date": "2027-12-31"}
    r = await api.post("/api/v1/contracts", json=body, token=manager.token)
    assert r.status == 201, r.body
    r = await api.get(f"{LEADS}/{lead['id']}", token=manager.token)
    assert r.json["winback_candidate"] is True
    assert [n["user_id"] for n in raw_db.notifications.find({"kind": "winback"})] == [manager.id]
    assert raw_db.tasks.count_documents({"kind": "winback"}) == 0  # no owner to give it to: the managers decide
    r = await api.get(f"{LEADS}?winback=true", token=manager.token)
    assert [x["id"] for x in r.json["items"]] == [lead["id"]]
