"""Helpers for the survey, return-visit and service-report tests: a customer with a WeChat account
whose form submission made a lead, owned by a rep and walked to stage ``customer``."""

from __future__ import annotations

from dataclasses import dataclass

from bson import ObjectId

from capture_kit import answers, create_form, lead_of, submit, unique_phone
from conftest import Person
from leads_kit import LEADS

SURVEYS = "/api/v1/surveys"


@dataclass
class Customer:
    person: Person  # the customer's own account (role customer)
    lead_id: str
    rep: Person
    manager: Person


async def customer_lead(api, people, wechat_state, raw_db, *, team: str = "华北销售部", slug: str = "expo-2026", rep: Person | None = None,
                        manager: Person | None = None, stage: str = "customer") -> Customer:
    """A customer who submitted ``slug`` (made once per team) while signed in; the lead is assigned
    to ``rep`` and moved to ``stage``."""
    admin = await people.admin()
    team_id = await people.team(team)
    if raw_db["forms"].find_one({"slug": slug}) is None:
        await create_form(api, admin, team_id, slug=slug)
    manager = manager or await people.manager(team=team)
    rep = rep or await people.rep(team=team)
    customer = await people.customer(wechat_state)
    r = await submit(api, {"answers": answers(mobile=unique_phone())}, slug=slug, token=customer.token)
    assert r.status in (200, 201), r.body
    lead_id = lead_of(raw_db, r)
    r = await api.post(f"{LEADS}/{lead_id}/assign", json={"owner_id": rep.id, "reason": "分给你"}, token=manager.token)
    assert r.status == 200, r.body
    path = ("contacted", "qualified", "customer")
    for to in path[: path.index(stage) + 1] if stage in path else ():
        r = await api.post(f"{LEADS}/{lead_id}/stage", json={"to": to}, token=rep.token)
        assert r.status == 200, r.body
    return Customer(customer, lead_id, rep, manager)


async def offer(ctx, who: Customer, *, source: str = "ticket", source_id: str | None = None) -> dict:
    """A survey offered the way TicketService (resolved) and the contract job offer one."""
    survey = await ctx.surveys.offer(lead_id=who.lead_id, customer_id=who.person.id, team_id=who.rep.team_id, source=source,
                                     source_id=source_id or str(ObjectId()), now=ctx.clock.now())
    assert survey is not None
    return survey


async def answer(api, who: Customer, survey_id: str, **body):
    body.setdefault("csat", 5)
    body.setdefault("nps", 10)
    return await api.post(f"{SURVEYS}/{survey_id}/answer", json=body, token=who.person.token)
