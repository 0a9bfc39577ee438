"""A rep sees the tickets of the leads they own now: when a lead changes hands (reassigned, assigned
in bulk, released to the pool, claimed from it), its tickets follow it, over HTTP."""

from __future__ import annotations

import pytest

from leads_kit import LEADS, release
from tickets_kit import TICKETS, customer_of, open_ticket


async def _listed(api, person) -> set[str]:
    r = await api.get(f"{TICKETS}?limit=100", token=person.token)
    assert r.status == 200, r.body
    return {t["id"] for t in r.json["items"]}


async def _reads(api, person, ticket_id: str) -> int:
    r = await api.get(f"{TICKETS}/{ticket_id}", token=person.token)
    return r.status


async def _sees(api, person, ticket_id: str) -> bool:
    listed, status = ticket_id in await _listed(api, person), await _reads(api, person, ticket_id)
    assert listed == (status == 200), (listed, status)
    if status != 200:
        assert status == 404
    return listed


@pytest.mark.gen_test(timeout=60)
async def test_a_reassigned_leads_tickets_go_with_it(api, people, wechat, raw_db):
    manager, old, new = await people.manager(), await people.rep(), await people.rep()
    customer = await customer_of(api, people, wechat, raw_db, old, manager)
    resolved = await open_ticket(api, customer, title="发票抬头错了", category="invoice")
    r = await api.post(f"{TICKETS}/{resolved['id']}/resolve", json={"version": raw_db.tickets.find_one({"_id": resolved["id"]})["version"]},
                       token=old.token)
    assert r.status == 200, r.body
    ticket = await open_ticket(api, customer)
    assert await _sees(api, old, ticket["id"]) and await _sees(api, old, resolved["id"])
    assert not await _sees(api, new, ticket["id"])
    version = raw_db.tickets.find_one({"_id": ticket["id"]})["version"]

    r = await api.post(f"{LEADS}/{customer.lead_id}/assign", json={"owner_id": new.id}, token=manager.token)
    assert r.status == 200, r.body

    assert await _sees(api, new, ticket["id"]) and await _sees(api, new, resolved["id"]), "open and resolved tickets alike"
    assert not await _sees(api, old, ticket["id"]) and not await _sees(api, old, resolved["id"])
    # The survey the resolved ticket offered follows the lead too.
    survey = raw_db.surveys.find_one({"source": "ticket", "source_id": resolved["id"]})
    assert survey is not None
    assert (await api.get(f"/api/v1/surveys/{survey['_id']}", token=new.token)).status == 200
    assert (await api.get(f"/api/v1/surveys/{survey['_id']}", token=old.token)).status == 404
    assert survey["_id"] not in {s["id"] for s in (await api.get("/api/v1/surveys", token=old.token)).json["items"]}
    # The version read before still holds: a new owner of the lead is no edit of the ticket.
    r = await api.post(f"{TICKETS}/{ticket['id']}/start", json={"version": version}, token=new.token)
    assert r.status == 200 and r.json["status"] == "in_progress", r.body

    r = await api.post(f"{LEADS}/assign", json={"ids": [customer.lead_id], "to_user_id": old.id}, token=manager.token)
    assert r.status == 200 and r.json["assigned"] == 1, r.body
    assert await _sees(api, old, ticket["id"]) and not await _sees(api, new, ticket["id"]), "a bulk assignment too"


@pytest.mark.gen_test(timeout=60)
async def test_a_released_leads_tickets_leave_the_rep_and_reach_whoever_claims_it(api, people, wechat, raw_db):
    manager, old, claimer = await people.manager(), await people.rep(), await people.rep()
    customer = await customer_of(api, people, wechat, raw_db, old, manager, stage="contacted")
    ticket = await open_ticket(api, customer)
    assert await _sees(api, old, ticket["id"])

    await release(api, old, customer.lead_id, reason="客户暂无预算")
    assert not await _sees(api, old, ticket["id"]) and not await _sees(api, claimer, ticket["id"])
    assert await _sees(api, manager, ticket["id"]), "still the team's"

    r = await api.post(f"{LEADS}/{customer.lead_id}/claim", token=claimer.token)
    assert r.status == 200, r.body
    assert await _sees(api, claimer, ticket["id"]) and not await _sees(api, old, ticket["id"])
