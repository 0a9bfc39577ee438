"""Churn signals: a complaint, a reopened ticket, a low score move a customer to at_risk with a
reason and give the owner a task — once, however many signals arrive, even at the same moment."""

from __future__ import annotations

import asyncio

import pytest

from tickets_kit import customer_of, open_ticket, service_staff, timeline


def _at_risk_moves(events: list[dict]) -> list[dict]:
    return [e for e in events if e["kind"] == "stage_changed" and e["data"]["to"] == "at_risk"]


@pytest.mark.gen_test(timeout=60)
async def test_a_complaint_flags_the_customer_at_risk_once_with_one_task(ctx, api, people, wechat, raw_db):
    manager, owner = await people.manager(), await people.rep()
    await service_staff(people)
    customer = await customer_of(api, people, wechat, raw_db, owner, manager)
    await open_ticket(api, customer, category="complaint", title="服务态度差")
    lead = raw_db.leads.find_one({"_id": customer.lead_id})
    assert lead["stage"] == "at_risk" and lead["at_risk_signal"]["signal"] == "complaint"
    [move] = _at_risk_moves(await timeline(api, owner, customer.lead_id))
    assert move["actor_role"] == "system" and "投诉" in move["data"]["reason"]
    [task] = list(raw_db.tasks.find({"kind": "churn_signal"}))
    assert task["assignee_id"] == owner.id and task["lead_id"] == customer.lead_id and task["status"] == "open"
    r = await api.get("/api/v1/tasks", token=owner.token)
    assert [t["kind"] for t in r.json["items"]] == ["churn_signal"]

    # Already at risk: a second complaint, a low score — nothing new.
    await open_ticket(api, customer, category="complaint", title="还是不满意")
    assert await ctx.churn_signals.flag(customer.lead_id, "low_csat", {"csat": 1}, ctx.clock.now()) is False
    assert len(_at_risk_moves(await timeline(api, owner, customer.lead_id))) == 1
    assert raw_db.tasks.count_documents({"kind": "churn_signal"}) == 1


@pytest.mark.gen_test(timeout=60)
async def test_signals_racing_for_one_customer_move_it_once(ctx, api, people, wechat, raw_db):
    manager, owner = await people.manager(), await people.rep()
    customer = await customer_of(api, people, wechat, raw_db, owner, manager)
    now = ctx.clock.now()
    results = await asyncio.gather(
        ctx.churn_signals.flag(customer.lead_id, "low_csat", {"survey_id": "s1", "csat": 2}, now),
        ctx.churn_signals.flag(customer.lead_id, "low_nps", {"survey_id": "s1", "nps": 3}, now),
        ctx.churn_signals.flag(customer.lead_id, "reopened", {"ticket_id": "t1"}, now),
    )
    assert sorted(results) == [False, False, True]
    assert len(_at_risk_moves(await timeline(api, owner, customer.lead_id))) == 1
    assert raw_db.tasks.count_documents({"kind": "churn_signal", "lead_id": customer.lead_id}) == 1
    assert raw_db.notifications.count_documents({"user_id": owner.id, "kind": "task_assigned"}) == 1


@pytest.mark.gen_test(timeout=60)
async def test_only_customers_are_flagged(ctx, api, people, wechat, raw_db):
    manager, owner = await people.manager(), await people.rep()
    prospect = await customer_of(api, people, wechat, raw_db, owner, manager, stage="contacted")
    assert await ctx.churn_signals.flag(prospect.lead_id, "complaint", {}, ctx.clock.now()) is False
    assert await ctx.churn_signals.flag("no-such-lead", "low_nps", {}, ctx.clock.now()) is False
    assert raw_db.leads.find_one({"_id": prospect.lead_id})["stage"] == "contacted"
    assert raw_db.tasks.count_documents({"kind": "churn_signal"}) == 0
    with pytest.raises(ValueError):
        await ctx.churn_signals.flag(prospect.lead_id, "bad_mood", {}, ctx.clock.now())
