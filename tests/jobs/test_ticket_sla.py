"""ticket_sla: due-soon reminders, breaches recorded and escalated to the managers — exactly once
across three schedulers — and the sweep that dispatches what a request left undispatched."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from jobs.registry import load_jobs, run_job
from server.context import build_context
from tickets_kit import TICKETS, customer_of, open_ticket, service_staff, timeline

load_jobs()


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _keys(raw_db, kind: str) -> list[str]:
    return sorted(n["dedupe_key"] for n in raw_db.notifications.find({"kind": kind}))


@pytest.mark.gen_test(timeout=60)
async def test_a_breach_escalates_exactly_once_across_three_schedulers(ctx, api, people, wechat, raw_db):
    manager, second_manager, owner = await people.manager(), await people.manager(), await people.rep()
    far_manager = await people.manager(team="华南销售部")
    handler = await service_staff(people)
    customer = await customer_of(api, people, wechat, raw_db, owner, manager)
    ticket = await open_ticket(api, customer, priority="urgent")
    r = await api.get(f"{TICKETS}/{ticket['id']}", token=manager.token)
    first_due, resolution_due = _at(r.json["first_response_due_at"]), _at(r.json["resolution_due_at"])
    # Three instances, each with its own scheduler (and lease owner).
    others = [build_context(ctx.settings, ctx.database, ctx.clock) for _ in range(2)]
    instances = [ctx, *others]

    async def three_schedulers(now: datetime) -> list[dict]:
        return await asyncio.gather(*(run_job(c, "ticket_sla", now=now, leases=c.lease_service(owner=f"scheduler-{i}")) for i, c in enumerate(instances)))

    await three_schedulers(first_due - timedelta(minutes=31))
    assert _keys(raw_db, "ticket_due_soon") == []
    await three_schedulers(first_due - timedelta(minutes=29))
    assert len(_keys(raw_db, "ticket_due_soon")) == 1  # the handler, once
    assert raw_db.notifications.find_one({"kind": "ticket_due_soon"})["user_id"] == handler.id

    # The breach, with the lease out of the way: three instances take the same step at once.
    results = await asyncio.gather(*(c.tickets.check_sla(first_due + timedelta(minutes=1)) for c in instances))
    assert sum(r["breached"] for r in results) == 1
    await three_schedulers(first_due + timedelta(minutes=2))  # and the scheduled runs after it add nothing
    doc = raw_db.tickets.find_one({"_id": ticket["id"]})
    assert doc["breached"] == ["first_response"] and doc["is_breached"] and doc["escalated"]  # truthy: nx-27017 keeps a $set boolean as 1
    assert sorted(doc["escalated_to"]) == sorted([manager.id, second_manager.id])
    breaches = [e for e in await timeline(api, owner, customer.lead_id) if e["kind"] == "ticket_breached"]
    assert len(breaches) == 1
    data = breaches[0]["data"]
    assert (data["ticket_id"], data["which"], data["assignee_id"]) == (ticket["id"], "first_response", handler.id)
    assert sorted(data["escalated_to"]) == sorted([manager.id, second_manager.id])
    assert len(_keys(raw_db, "ticket_breached")) == 1
    assert sorted(n["user_id"] for n in raw_db.notifications.find({"kind": "ticket_escalated"})) == sorted([manager.id, second_manager.id])
    assert raw_db.notifications.count_documents({"user_id": far_manager.id}) == 0
    r = await api.get(f"{TICKETS}?breached=true", token=manager.token)
    assert [t["id"] for t in r.json["items"]] == [ticket["id"]] and r.json["items"][0]["breached"] == ["first_response"]

    # The resolution target breaches too, once, whatever the three schedulers do.
    await asyncio.gather(*(c.tickets.check_sla(resolution_due + timedelta(minutes=1)) for c in instances))
    await three_schedulers(resolution_due + timedelta(minutes=5))
    doc = raw_db.tickets.find_one({"_id": ticket["id"]})
    assert doc["breached"] == ["first_response", "resolution"] and doc["sla"]["next_at"] is None
    assert [e["data"]["which"] for e in await timeline(api, owner, customer.lead_id) if e["kind"] == "ticket_breached"] == ["resolution", "first_response"]
    assert raw_db.notifications.count_documents({"kind": "ticket_escalated"}) == 4

    # Resolving late says so on the timeline; a resolved ticket has no step left.
    r = await api.post(f"{TICKETS}/{ticket['id']}/resolve", json={"version": doc["version"]}, token=handler.token)
    assert r.status == 200, r.body
    resolved = next(e["data"] for e in await timeline(api, owner, customer.lead_id) if e["kind"] == "ticket_resolved")
    assert resolved["breached_first_response"] is True and resolved["breached_resolution"] is True


@pytest.mark.gen_test(timeout=60)
async def test_a_first_response_in_time_stops_its_clock(ctx, api, people, wechat, raw_db):
    manager, owner = await people.manager(), await people.rep()
    handler = await service_staff(people)
    customer = await customer_of(api, people, wechat, raw_db, owner, manager)
    ticket = await open_ticket(api, customer, priority="normal")
    r = await api.post(f"{TICKETS}/{ticket['id']}/replies", json={"body": "收到，马上处理"}, token=handler.token)
    assert r.status == 201
    r = await api.get(f"{TICKETS}/{ticket['id']}", token=manager.token)
    first_due, resolution_due = _at(r.json["first_response_due_at"]), _at(r.json["resolution_due_at"])
    result = await run_job(ctx, "ticket_sla", now=first_due + timedelta(minutes=1))
    assert result["breached"] == 0 and raw_db.tickets.find_one({"_id": ticket["id"]})["breached"] == []
    result = await run_job(ctx, "ticket_sla", now=resolution_due + timedelta(minutes=1))
    assert result["breached"] == 1 and raw_db.tickets.find_one({"_id": ticket["id"]})["breached"] == ["resolution"]


@pytest.mark.gen_test(timeout=60)
async def test_the_sweep_dispatches_a_ticket_its_request_did_not(ctx, api, people, wechat, raw_db):
    manager, owner = await people.manager(), await people.rep()
    customer = await customer_of(api, people, wechat, raw_db, owner, manager)
    ticket = await open_ticket(api, customer)  # no service staff yet: nobody to take it
    assert ticket["status"] == "open"
    handler = await service_staff(people)
    # A request that died before dispatching leaves the ticket waiting (as an instance killed mid-request would).
    raw_db.tickets.update_one({"_id": ticket["id"]}, {"$set": {"awaiting_dispatch": True}})
    result = await run_job(ctx, "ticket_sla", now=_at(ticket["created_at"]) + timedelta(minutes=1))
    assert result["dispatched"] == 1
    doc = raw_db.tickets.find_one({"_id": ticket["id"]})
    assert doc["assignee_id"] == handler.id and doc["status"] == "assigned" and doc["awaiting_dispatch"] is False
    assert (await run_job(ctx, "ticket_sla", now=_at(ticket["created_at"]) + timedelta(minutes=2)))["dispatched"] == 0
