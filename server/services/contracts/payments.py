"""Payments (回款): money received against an active or ended contract, allocated to the oldest open
instalment first, recorded by managers (own team), admins and finance, seen by the owner, their
managers, admins and finance. A payment is part of the contract document (a version-guarded
replacement: it carries datetimes), and its id is pre-allocated under an ``Idempotency-Key``."""

from __future__ import annotations

from datetime import timedelta, timezone

from bson import ObjectId

from config.settings import Settings
from server.actor import Actor
from server.clock import Clock
from server.errors import Conflict, Forbidden, Invalid, NotFound, VersionMismatch, detail
from server.schemas.contracts import PaymentIn
from server.services.audit import AuditService
from server.services.contracts.common import ContractBase, business_today, money, next_due
from server.services.contracts.money_events import payment_event
from server.services.leads import LeadService


class PaymentService(ContractBase):
    def __init__(self, *, contracts, clock: Clock, settings: Settings, audit: AuditService, leads: LeadService, leads_view) -> None:
        super().__init__(contracts, clock, settings)
        self._audit = audit
        self._leads = leads
        self._leads_col = leads_view  # read-only: the lead's source goes into the payment's event

    async def record(self, actor: Actor, contract_id: str, data: PaymentIn, payment_id: str | None = None) -> dict:
        """Record money received; ``payment_id`` is pre-allocated under an Idempotency-Key."""
        payment_id = payment_id or str(ObjectId())
        if not (actor.is_manager or actor.is_admin or actor.finance):
            # Still 404 for a contract the caller cannot see at all.
            await self._in_scope(actor, contract_id)
            raise Forbidden("payment.forbidden")
        now = self._clock.now()
        if data.received_at > now + timedelta(minutes=5):
            raise Invalid("payment.future_date", details=[detail("received_at", "future", text="not_in_future")])
        received_at = data.received_at.astimezone(timezone.utc)
        received_at = received_at.replace(microsecond=received_at.microsecond // 1000 * 1000)  # as BSON stores it
        for _ in range(5):  # a concurrent payment on the same contract: read again and retry
            doc = await self._in_scope(actor, contract_id)
            if doc["status"] not in ("active", "ended"):
                raise Conflict("payment.contract_not_active")
            before = money(doc, business_today(now, self._settings))
            if data.amount_fen > before["outstanding_fen"]:
                raise Invalid("payment.over_balance", params={"outstanding": before["outstanding_fen"]},
                              details=[detail("amount_fen", "over_balance", text="at_most", max=before["outstanding_fen"])])
            plan = [dict(i) for i in doc["payment_plan"]]
            left, allocations = data.amount_fen, []
            for inst in plan:  # oldest open instalment first
                room = inst["amount_fen"] - inst.get("paid_fen", 0)
                if left <= 0 or room <= 0:
                    continue
                take = min(room, left)
                inst["paid_fen"] = inst.get("paid_fen", 0) + take
                allocations.append({"no": inst["no"], "amount_fen": take})
                left -= take
            after = money({**doc, "payment_plan": plan}, business_today(now, self._settings))
            payment = {
                "id": payment_id, "amount_fen": data.amount_fen, "received_at": received_at, "method": data.method,
                "reference": data.reference, "allocations": allocations, "recorded_by": actor.id, "recorded_at": now,
                "paid_fen": after["paid_fen"], "outstanding_fen": after["outstanding_fen"], "paid": after["paid"],
            }
            try:
                await self._replace(doc, {"payment_plan": plan, "payments": [*doc.get("payments", []), payment], "payment_ids": [*doc.get("payment_ids", []), payment_id], "paid": after["paid"], "next_due": next_due(plan)})
            except VersionMismatch:
                continue
            await self._audit.record(actor, "contract.payment", target_type="contract", target_id=doc["_id"], details={"payment_id": payment_id, "amount_fen": data.amount_fen})
            await self._on_recorded(actor, doc, payment, now)
            return {**payment, "contract_id": doc["_id"]}
        raise VersionMismatch("contract.version_mismatch")

    async def exists(self, payment_id: str) -> bool:
        return await self._col.find_one({"payment_ids": payment_id}, {"_id": 1}) is not None

    async def payment(self, actor: Actor, payment_id: str) -> dict:
        """A payment already recorded, for the caller's scope; else 404."""
        doc = await self._col.find_one({"payment_ids": payment_id, **self.scope(actor)}, {"payments": 1})
        if doc is None:
            raise NotFound("contract.not_found")
        return {**next(p for p in doc["payments"] if p["id"] == payment_id), "contract_id": doc["_id"]}

    async def _on_recorded(self, actor: Actor, contract: dict, payment: dict, now) -> None:
        """The customer's lifetime value grows, and the timeline gets ``payment_recorded`` (the
        revenue counters fold it: collected on the business day of ``received_at``)."""
        lead = await self._leads_col.find_one({"_id": contract["lead_id"]}, {"source": 1}) or {}
        await self._leads.add_lifetime_value(contract["lead_id"], payment["amount_fen"])
        await self._leads.add_events_once([payment_event(contract, payment, lead, actor)])  # at recorded_at (now); id from the payment
