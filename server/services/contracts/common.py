"""What every part of the contract aggregate shares: business dates, the money view of a plan, and
``ContractBase`` — the collection, who sees a contract (scope, approvers, money), reads, the
version-guarded whole-document replacement and the output view."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pymongo import ReturnDocument

from config.settings import Settings
from server.actor import Actor
from server.clock import Clock
from server.errors import NotFound, VersionMismatch
from server.services.leads import LeadService

APPROVER_ROLES = ("manager", "admin")
NAMED = "named"  # a step decided by the people it names (any_of / all_of), not by a role


def parse_date(value: str) -> date:
    return date.fromisoformat(value)


def business_today(now: datetime, settings: Settings) -> date:
    return now.astimezone(settings.tz).date()


def money(contract: dict, today: date) -> dict[str, int | bool]:
    """Paid, outstanding and overdue amounts, computed from the plan as of ``today``."""
    plan = contract.get("payment_plan") or []
    paid = sum(i.get("paid_fen", 0) for i in plan)
    overdue = sum(i["amount_fen"] - i.get("paid_fen", 0) for i in plan if parse_date(i["due_date"]) < today)
    return {"paid_fen": paid, "outstanding_fen": contract["amount_fen"] - paid, "overdue_fen": overdue, "paid": paid >= contract["amount_fen"]}


def sale_facts(contract: dict, lead: dict | None) -> dict:
    """What the revenue counters group a contract's money by, copied into its timeline events
    (the fold reads events only): team, owner, and the lead's source kind, channel and campaign."""
    source = (lead or {}).get("source") or {}
    return {"team_id": contract.get("team_id"), "owner_id": contract.get("owner_id"),
            "source": source.get("kind"), "channel": source.get("channel"), "campaign": source.get("campaign")}


def next_due(plan: list[dict]) -> str | None:
    open_ = [i["due_date"] for i in plan if i.get("paid_fen", 0) < i["amount_fen"]]
    return min(open_) if open_ else None


class ContractBase:
    """The ``contracts`` collection as each part of the aggregate reads and replaces it."""

    def __init__(self, contracts, clock: Clock, settings: Settings) -> None:
        self._col = contracts
        self._clock = clock
        self._settings = settings

    # ------------------------------------------------------------ scope
    @staticmethod
    def scope(actor: Actor) -> dict:
        """Like leads; finance staff see every contract (they collect the money)."""
        if actor.is_admin or actor.finance:
            return {}
        return LeadService.scope(actor)

    @staticmethod
    def sees_money(actor: Actor, contract: dict) -> bool:
        """Payments are for the owner, their team's managers, admins and finance."""
        if actor.is_admin or actor.finance:
            return True
        if actor.is_manager:
            return bool(actor.team_id) and contract.get("team_id") == actor.team_id
        return contract.get("owner_id") == actor.id

    def _visible(self, actor: Actor, contract: dict) -> bool:
        """In the caller's scope, or waiting for the caller's decision now, or naming the caller as
        an approver (``any_of``/``all_of``) while they still approve at all."""
        scope = self.scope(actor)
        if all(contract.get(k) == v for k, v in scope.items()) and "_id" not in scope:
            return True
        if self.holds_current_step(actor, contract):
            return True
        return actor.role in APPROVER_ROLES and actor.id in contract.get("approver_ids", [])

    @staticmethod
    def holds_current_step(actor: Actor, contract: dict) -> bool:
        """Whether the caller may decide the contract's current step *now*.

        A ``manager`` step belongs to whoever is a manager of the contract's team now, an ``admin``
        step to whoever is an admin now (roles and teams come from the user read on this request),
        so a manager moved to another team loses the old team's pending contracts at once and the
        team's new manager gets them. Named steps (``any_of``/``all_of``) belong to the people named
        who have not yet signed, while they still hold an approver's role. Nobody decides a contract
        they own or submitted.
        """
        if contract.get("status") != "pending" or contract.get("current_step") is None:
            return False
        if actor.id in (contract.get("owner_id"), contract.get("submitted_by")):
            return False
        holder = contract.get("current_role") or NAMED
        if holder == "manager":
            return actor.is_manager and bool(actor.team_id) and actor.team_id == contract.get("team_id")
        if holder == "admin":
            return actor.is_admin
        return actor.role in APPROVER_ROLES and actor.id in contract.get("current_approvers", [])

    # ------------------------------------------------------------ reads
    async def find(self, actor: Actor, contract_id: str) -> dict | None:
        """The contract, None when there is none; 404 when the caller may not see it."""
        doc = await self._col.find_one({"_id": str(contract_id)[:64]})
        if doc is not None and not self._visible(actor, doc):
            raise NotFound("contract.not_found")
        return doc

    async def get(self, actor: Actor, contract_id: str) -> dict:
        """The contract, for those in its scope and for anyone asked to approve it; else 404."""
        doc = await self.find(actor, contract_id)
        if doc is None:
            raise NotFound("contract.not_found")
        return doc

    async def _in_scope(self, actor: Actor, contract_id: str) -> dict:
        doc = await self._col.find_one({"_id": str(contract_id)[:64], **self.scope(actor)})
        if doc is None:
            raise NotFound("contract.not_found")
        return doc

    # ------------------------------------------------------------ writes
    async def _replace(self, doc: dict, changes: dict) -> dict:
        new = {**doc, **changes, "version": doc["version"] + 1, "updated_at": self._clock.now()}
        result = await self._col.find_one_and_replace({"_id": doc["_id"], "version": doc["version"]}, new, return_document=ReturnDocument.AFTER)
        if result is None:
            raise VersionMismatch("contract.version_mismatch")
        return result

    # ------------------------------------------------------------ output
    def out(self, actor: Actor, doc: dict) -> dict:
        out: dict[str, Any] = {**doc, "id": doc["_id"]}
        if self.sees_money(actor, doc):
            out.update(money(doc, business_today(self._clock.now(), self._settings)))
            out["payments"] = [{**p, "contract_id": doc["_id"]} for p in doc.get("payments", [])]
        else:
            out["payments"] = None
            out["paid"] = None
            out["payment_plan"] = [{**i, "paid_fen": None} for i in doc["payment_plan"]]
        if out.get("renewed_by") == "pending":
            out["renewed_by"] = None
        return out
