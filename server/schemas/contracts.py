"""Contracts, their approval chains, payment plans and payments (回款)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import Field, StrictInt, model_validator

from server.schemas.common import INT64_MAX, IsoDatetime, MultiLine, OutModel, PageQuery, PatchModel, RequestModel, SaneDate, SaneDatetime, SingleLine, Versioned
from server.schemas.leads import LEAD_ID_PATTERN
from server.schemas.uploads import AttachmentOut, Attachments

ContractStatus = Literal["draft", "pending", "active", "rejected", "ended"]
PaymentMethod = Literal["bank_transfer", "wechat_pay", "alipay", "cash", "cheque", "other"]
CONTRACT_ID_PATTERN = r"^[0-9a-f]{24}$"
Fen = Annotated[StrictInt, Field(gt=0, le=INT64_MAX)]


# ---------------------------------------------------------------- requests
class InstalmentIn(RequestModel):
    due_date: SaneDate
    amount_fen: Fen


class ContractCreate(RequestModel):
    lead_id: str = Field(pattern=LEAD_ID_PATTERN)
    title: SingleLine = Field(min_length=1, max_length=200)
    amount_fen: Fen = Field(description="Integer fen; at most MPCRM_CONTRACT_MAX_AMOUNT_FEN")
    start_date: SaneDate
    end_date: SaneDate
    payment_plan: list[InstalmentIn] | None = Field(None, min_length=1, max_length=120)
    notes: MultiLine | None = Field(None, max_length=2000)
    attachments: Attachments | None = None

    @model_validator(mode="after")
    def _dates(self) -> ContractCreate:
        if self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        return self


class ContractUpdate(PatchModel):
    """null clears the notes, or the payment plan (back to one instalment at the start)."""

    nullable = frozenset({"notes", "payment_plan"})
    title: SingleLine | None = Field(None, min_length=1, max_length=200)
    amount_fen: Fen | None = None
    start_date: SaneDate | None = None
    end_date: SaneDate | None = None
    payment_plan: list[InstalmentIn] | None = Field(None, min_length=1, max_length=120)
    notes: MultiLine | None = Field(None, max_length=2000)
    attachments: Attachments | None = Field(None, description="The draft's whole list of attachments: ids of uploads (POST /uploads), at most 9")


class SubmitIn(Versioned):
    pass


class DecisionIn(Versioned):
    comment: MultiLine = Field("", max_length=500)


class ContractListQuery(PageQuery):
    status: ContractStatus | None = None
    lead_id: str | None = Field(None, pattern=LEAD_ID_PATTERN)


class ApprovalQuery(PageQuery):
    status: Literal["pending"] = "pending"


class PaymentIn(RequestModel):
    amount_fen: Fen
    received_at: SaneDatetime
    method: PaymentMethod
    reference: SingleLine | None = Field(None, max_length=100)


# ---------------------------------------------------------------- responses
class InstalmentOut(OutModel):
    no: int
    due_date: date
    amount_fen: int
    paid_fen: int | None = Field(None, description="Hidden unless you may see payments")


class DecisionOut(OutModel):
    user_id: str
    name: str = ""
    decision: Literal["approve", "reject", "return"]
    comment: str = ""
    at: IsoDatetime


class StepOut(OutModel):
    index: int
    type: str
    mode: Literal["any", "all"]
    holder: Literal["manager", "admin", "named"] | None = Field(
        None, description="Who decides: any manager of the contract's team now, any admin now, or the named approvers")
    approvers: list[str] = Field(description="Named steps: who decides. Role steps: who held the role when the step was built (notified)")
    approver_names: dict[str, str] = {}
    approved_by: list[str] = []
    state: Literal["waiting", "current", "approved", "rejected", "returned", "skipped"]
    note: str | None = None
    started_at: IsoDatetime | None = None
    decided_at: IsoDatetime | None = None
    decisions: list[DecisionOut] = []


class PaymentOut(OutModel):
    id: str
    contract_id: str
    amount_fen: int
    received_at: IsoDatetime
    method: PaymentMethod
    reference: str | None = None
    allocations: list[dict[str, int]]
    recorded_by: str
    recorded_at: IsoDatetime
    paid_fen: int = Field(description="The contract's total received after this payment")
    outstanding_fen: int
    paid: bool


class ContractOut(OutModel):
    id: str
    lead_id: str
    lead_name: str = ""
    owner_id: str | None = None
    team_id: str | None = None
    title: str
    amount_fen: int
    start_date: date
    end_date: date
    notes: str | None = None
    attachments: list[AttachmentOut] = []
    status: ContractStatus
    renews: str | None = None
    renewed_by: str | None = None
    payment_plan: list[InstalmentOut]
    steps: list[StepOut] = []
    current_step: int | None = None
    current_approvers: list[str] = []
    submitted_by: str | None = None
    submitter_name: str | None = None
    submitted_at: IsoDatetime | None = None
    return_comment: str | None = None
    activated_at: IsoDatetime | None = None
    # Money: only for the owner, their managers, admins and finance (null for anyone else).
    paid_fen: int | None = None
    outstanding_fen: int | None = None
    overdue_fen: int | None = None
    paid: bool | None = None
    payments: list[PaymentOut] | None = None
    version: int
    created_at: IsoDatetime
    updated_at: IsoDatetime


class ContractPage(OutModel):
    items: list[ContractOut]
    next_cursor: str | None = None


class ApprovalItemOut(OutModel):
    contract_id: str
    title: str
    lead_id: str
    lead_name: str
    amount_fen: int
    step: int = Field(description="0-based index of the step waiting for you")
    step_type: str
    steps_total: int
    submitter_id: str
    submitter_name: str
    waiting_since: IsoDatetime
    version: int


class ApprovalPage(OutModel):
    items: list[ApprovalItemOut]
    next_cursor: str | None = None
