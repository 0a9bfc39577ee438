"""Contracts, mobile approvals, renewals and payments (回款)."""

from __future__ import annotations

from handlers.base import ApiHandler, operation
from server.schemas.contracts import (
    ApprovalPage, ApprovalQuery, ContractCreate, ContractListQuery, ContractOut, ContractPage, ContractUpdate, DecisionIn,
    PaymentIn, PaymentOut, SubmitIn,
)
from server.services.idempotency import load_existing

APPROVERS = ("manager", "admin")


class ContractListHandler(ApiHandler):
    @operation("Contracts in your scope, newest first (?status=&lead_id=)", query=ContractListQuery, response=ContractPage, tags=("contracts",))
    async def get(self) -> None:
        page = await self.ctx.contracts.list(self.actor, self.parse_query(ContractListQuery))
        self.write_page(ContractPage, page, lambda d: self.ctx.contracts.out(self.actor, d))

    @operation("Draft a contract for a lead in your scope; Idempotency-Key accepted", body=ContractCreate, response=ContractOut, status=201, idempotent=True, tags=("contracts",))
    async def post(self) -> None:
        body = self.parse_body(ContractCreate)
        contracts = self.ctx.contracts
        # A phone retrying after a lost response gets the first draft back, not a second one.
        doc = await self.idempotent(
            lambda contract_id: contracts.create(self.actor, body, contract_id=contract_id),
            lambda contract_id: contracts.find(self.actor, contract_id),
        )
        self.write_model(ContractOut, contracts.out(self.actor, doc), 201)


class ContractHandler(ApiHandler):
    @operation("A contract with its approval steps (payments for the owner, managers, admins, finance)", response=ContractOut, tags=("contracts",))
    async def get(self, contract_id: str) -> None:
        doc = await self.ctx.contracts.get(self.actor, contract_id)
        self.write_model(ContractOut, self.ctx.contracts.out(self.actor, doc))

    @operation(
        "Edit a draft (version or If-Match; 409 once submitted)", body=ContractUpdate, response=ContractOut, versioned=True, tags=("contracts",),
        extra_responses={409: "Not a draft any more"},
    )
    async def patch(self, contract_id: str) -> None:
        body = self.parse_body(ContractUpdate)
        doc = await self.ctx.contracts.update(self.actor, contract_id, body, self.expected_version(body.version))
        self.write_model(ContractOut, self.ctx.contracts.out(self.actor, doc))


class SubmitHandler(ApiHandler):
    @operation(
        "Submit a draft for approval; the chain comes from the amount", body=SubmitIn, response=ContractOut, versioned=True, tags=("contracts",),
        extra_responses={409: "Not a draft, or no one can approve it"},
    )
    async def post(self, contract_id: str) -> None:
        body = self.parse_body(SubmitIn)
        doc = await self.ctx.contracts.submit(self.actor, contract_id, self.expected_version(body.version))
        self.write_model(ContractOut, self.ctx.contracts.out(self.actor, doc))


def _decision_handler(decision: str, summary: str) -> type[ApiHandler]:
    class DecisionHandler(ApiHandler):
        # Full per-request user check: a deactivated approver is refused at once (docs/security.md),
        # which costs one command over the five first planned for an approval (docs/architecture.md).
        @operation(summary, roles=APPROVERS, body=DecisionIn, response=ContractOut, versioned=True, tags=("approvals",),
                   extra_responses={412: "Stale version (someone decided first)", 409: "Not awaiting approval"})
        async def post(self, contract_id: str) -> None:
            body = self.parse_body(DecisionIn)
            approver, doc = await self.ctx.contracts.decide(self.actor, contract_id, decision, self.expected_version(body.version), body.comment)
            self.write_model(ContractOut, self.ctx.contracts.out(approver, doc))

    DecisionHandler.__name__ = DecisionHandler.__qualname__ = f"{decision.capitalize()}Handler"
    return DecisionHandler


ApproveHandler = _decision_handler("approve", "Approve the current step (final step → active, the lead a customer)")
RejectHandler = _decision_handler("reject", "Reject the contract (final), with a comment")
ReturnHandler = _decision_handler("return", "Return the contract to its submitter as a draft, with a comment")


class RenewHandler(ApiHandler):
    @operation(
        "Start a renewal: a new draft linked to this contract", response=ContractOut, status=201, tags=("contracts",),
        extra_responses={409: "Not renewable (not active or ended), or already renewed"},
    )
    async def post(self, contract_id: str) -> None:
        doc = await self.ctx.contracts.renew(self.actor, contract_id)
        self.write_model(ContractOut, self.ctx.contracts.out(self.actor, doc), 201)


class PaymentListHandler(ApiHandler):
    @operation(
        "Record money received (managers, admins, finance); Idempotency-Key accepted",
        body=PaymentIn, response=PaymentOut, status=201, idempotent=True, tags=("contracts",),
        extra_responses={409: "The contract is not active, or the key is still running", 422: "More than the outstanding balance"},
    )
    async def post(self, contract_id: str) -> None:
        body = self.parse_body(PaymentIn)
        payments = self.ctx.payments
        payment = await self.idempotent(
            lambda payment_id: payments.record(self.actor, contract_id, body, payment_id),
            load_existing(payments.exists, lambda payment_id: payments.payment(self.actor, payment_id)),
        )
        self.write_model(PaymentOut, payment, 201)


class ApprovalInboxHandler(ApiHandler):
    @operation("Your approval inbox: contracts waiting for you, oldest first", roles=APPROVERS, query=ApprovalQuery, response=ApprovalPage, tags=("approvals",))
    async def get(self) -> None:
        query = self.parse_query(ApprovalQuery)
        page = await self.ctx.contracts.inbox(self.actor, query.limit, query.cursor)
        self.write_page(ApprovalPage, page)


routes = [
    (r"/api/v1/contracts", ContractListHandler),
    (r"/api/v1/contracts/(?P<contract_id>[^/]+)", ContractHandler),
    (r"/api/v1/contracts/(?P<contract_id>[^/]+)/submit", SubmitHandler),
    (r"/api/v1/contracts/(?P<contract_id>[^/]+)/approve", ApproveHandler),
    (r"/api/v1/contracts/(?P<contract_id>[^/]+)/reject", RejectHandler),
    (r"/api/v1/contracts/(?P<contract_id>[^/]+)/return", ReturnHandler),
    (r"/api/v1/contracts/(?P<contract_id>[^/]+)/renew", RenewHandler),
    (r"/api/v1/contracts/(?P<contract_id>[^/]+)/payments", PaymentListHandler),
    (r"/api/v1/approvals", ApprovalInboxHandler),
]
