"""The timeline events the revenue counters fold (server/services/stats.py ``MONEY_KINDS``), built
in one place for the live paths and for the start-up upgrade of contracts from before the counters.

Each event's id is derived from what it records (``derived_event_id``): ``contract_signed`` from the
contract and its ``activated_at``, ``payment_recorded`` from the payment and its ``recorded_at``,
``contract_ended`` from the contract and the start of the business day after its ``end_date``. So
the live path and the upgrade, or a write repeated after a crash, write one event, never two
(``LeadService.add_events_once``).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from server.actor import Actor
from server.clock import as_utc
from server.services.contracts.common import sale_facts
from server.services.lead_store import derived_event_id, event


def signed_event(contract: dict, lead: dict | None, actor: Actor, sale: str, renews_ended_on: str | None) -> dict:
    at = as_utc(contract["activated_at"])
    return event(contract["lead_id"], "contract_signed", actor, {
        "contract_id": contract["_id"], "amount_fen": contract["amount_fen"], "sale": sale, "renews": contract.get("renews"),
        "renews_ended_on": renews_ended_on, "start_date": contract["start_date"], "end_date": contract["end_date"], **sale_facts(contract, lead),
    }, at=at, event_id=derived_event_id(f"contract_signed:{contract['_id']}", at))


def payment_event(contract: dict, payment: dict, lead: dict | None, actor: Actor) -> dict:
    at = as_utc(payment["recorded_at"])
    return event(contract["lead_id"], "payment_recorded", actor, {
        "contract_id": contract["_id"], "payment_id": payment["id"], "amount_fen": payment["amount_fen"],
        "received_at": as_utc(payment["received_at"]).isoformat(), **sale_facts(contract, lead),
    }, at=at, event_id=derived_event_id(f"payment_recorded:{payment['id']}", at))


def ended_at(end_date: str, tz: ZoneInfo) -> datetime:
    """When a contract is over: the start of the business day after its last day."""
    return datetime.combine(date.fromisoformat(end_date) + timedelta(days=1), time(0), tz).astimezone(timezone.utc)


def ended_event(contract: dict, renewed: bool, actor: Actor, at: datetime, tz: ZoneInfo) -> dict:
    return event(contract["lead_id"], "contract_ended", actor, {
        "contract_id": contract["_id"], "end_date": contract["end_date"], "renewed": renewed,
        "team_id": contract.get("team_id"), "owner_id": contract.get("owner_id"),
    }, at=at, event_id=derived_event_id(f"contract_ended:{contract['_id']}", ended_at(contract["end_date"], tz)))
