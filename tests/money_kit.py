"""Contracts signed and money received through the HTTP API, for the revenue, retention, RFM and
lifetime-value tests: ``sign`` walks a draft through every approval step, ``pay`` records a payment."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

CONTRACTS = "/api/v1/contracts"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def at_shanghai(day: date, hh: int = 10, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), SHANGHAI).astimezone(timezone.utc)


def dated(clock):
    """``at(day, make)``: await ``make()`` with the test clock at 10:00 of that business day, then
    put the clock back where it was when ``dated`` was called."""
    now = clock.now()

    async def at(d: date, coro_fn):
        clock.at = at_shanghai(d)
        try:
            return await coro_fn()
        finally:
            clock.at = now

    return at


async def sign(api, owner, approvers, lead: dict, amount: int, start: date, end: date | None = None, *, renew_of: dict | None = None,
               plan: list[tuple[date, int]] | None = None) -> dict:
    """A contract of ``lead`` drafted by ``owner`` (or the renewal of ``renew_of``), submitted and
    approved step by step by the first of ``approvers`` who holds each step; returns it active."""
    if renew_of is not None:
        r = await api.post(f"{CONTRACTS}/{renew_of['id']}/renew", json={}, token=owner.token)
    else:
        body = {"lead_id": lead["id"], "title": "服务合同", "amount_fen": amount, "start_date": start.isoformat(),
                "end_date": (end or start + timedelta(days=364)).isoformat()}
        if plan:
            body["payment_plan"] = [{"due_date": d.isoformat(), "amount_fen": a} for d, a in plan]
        r = await api.post(CONTRACTS, json=body, token=owner.token)
    assert r.status == 201, r.body
    r = await api.post(f"{CONTRACTS}/{r.json['id']}/submit", json={"version": r.json["version"]}, token=owner.token)
    assert r.status == 200, r.body
    contract = r.json
    for _ in range(5):
        if contract["status"] == "active":
            return contract
        for person in approvers:
            r = await api.post(f"{CONTRACTS}/{contract['id']}/approve", json={"version": contract["version"], "comment": ""}, token=person.token)
            if r.status == 200:
                contract = r.json
                break
        else:
            raise AssertionError(f"nobody could approve {contract['id']}: {r.body}")
    assert contract["status"] == "active", contract
    return contract


async def pay(api, person, contract: dict, amount: int, received_at: datetime) -> dict:
    body = {"amount_fen": amount, "received_at": received_at.isoformat(), "method": "bank_transfer", "reference": "银行流水"}
    r = await api.post(f"{CONTRACTS}/{contract['id']}/payments", json=body, token=person.token)
    assert r.status == 201, r.body
    return r.json
