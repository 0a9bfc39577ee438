"""Helpers for the ticket tests (tests/handlers/test_tickets.py, tests/jobs/test_ticket_sla.py,
tests/security/test_tickets.py, tests/services/test_churn_signals.py): a customer whose form
submission made a lead that a rep owns (walked to ``customer``), service staff, ticket rules."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from capture_kit import answers, create_form, lead_of, submit
from conftest import Person
from leads_kit import LEADS

TICKETS = "/api/v1/tickets"
RULES = "/api/v1/allocation-rules"
_slugs = itertools.count(1)
_phones = itertools.count(1)


@dataclass
class Customer:
    person: Person
    lead_id: str

    @property
    def token(self) -> str:
        return self.person.token

    @property
    def id(self) -> str:
        return self.person.id


async def service_staff(people, team: str = "华北销售部", role: str = "rep") -> Person:
    """A rep (or manager) with the service flag: dispatch picks among these."""
    return await people.make(role, team=team, service=True)


async def customer_of(api, people, wechat, raw_db, owner: Person, manager: Person, *, stage: str = "customer", team: str = "华北销售部") -> Customer:
    """A WeChat customer who filled in a form of ``team``; the lead it made is given to ``owner``
    by ``manager`` and walked to ``stage``."""
    state, _ = wechat
    admin = await people.admin()
    slug = f"svc-{next(_slugs)}"
    await create_form(api, admin, await people.team(team), slug=slug)
    customer = await people.customer(state)
    r = await submit(api, {"answers": answers(mobile=f"137{next(_phones):08d}")}, slug=slug, token=customer.token)
    assert r.status == 201, r.body
    lead_id = lead_of(raw_db, r)
    r = await api.post(f"{LEADS}/{lead_id}/assign", json={"owner_id": owner.id}, token=manager.token)
    assert r.status == 200, r.body
    path = {"new": [], "contacted": ["contacted"], "customer": ["contacted", "qualified", "customer"]}[stage]
    for to in path:
        r = await api.post(f"{LEADS}/{lead_id}/stage", json={"to": to}, token=owner.token)
        assert r.status == 200, r.body
    return Customer(customer, lead_id)


async def ticket_rule(api, admin: Person, team_id: str, members: list[Person], *, name: str = "投诉专线", strategy: str = "round_robin", **match) -> dict:
    body = {"name": name, "team_id": team_id, "kind": "ticket", "strategy": strategy, "members": [m.id for m in members], "match": match, "priority": 10}
    r = await api.post(RULES, json=body, token=admin.token)
    assert r.status == 201, r.body
    return r.json


async def open_ticket(api, who, *, key: str | None = None, **body) -> dict:
    body.setdefault("category", "fault")
    body.setdefault("title", "设备无法开机")
    body.setdefault("description", "昨天开始无法开机，指示灯不亮")
    headers = {"Idempotency-Key": key} if key else None
    r = await api.post(TICKETS, json=body, token=who.token, headers=headers)
    assert r.status == 201, r.body
    return r.json


async def timeline(api, staff: Person, lead_id: str) -> list[dict]:
    r = await api.get(f"{LEADS}/{lead_id}/timeline?limit=100", token=staff.token)
    assert r.status == 200, r.body
    return r.json["items"]


async def set_service(api, admin: Person, team_id: str, **fields) -> dict:
    """Change the team's ``service`` settings group through the settings API."""
    r = await api.get(f"/api/v1/teams/{team_id}/settings", token=admin.token)
    assert r.status == 200, r.body
    r = await api.patch(f"/api/v1/teams/{team_id}/settings", json={"service": fields, "version": r.json["version"]}, token=admin.token)
    assert r.status == 200, r.body
    return r.json
