"""After-sale service tickets (工单): requests, answers and the category catalogue."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from server.schemas.common import IsoDatetime, LocalizedStr, MultiLine, OutModel, PageQuery, RequestModel, SingleLine, Versioned
from server.schemas.users import OBJECT_ID_PATTERN

TicketStatus = Literal["open", "assigned", "in_progress", "resolved", "closed"]
TicketPriority = Literal["low", "normal", "high", "urgent"]
TicketCategory = Literal["consult", "fault", "complaint", "return", "invoice", "other"]

# The fixed catalogue: the code is what clients send and store, the labels are what people read.
CATEGORIES: list[dict[str, str]] = [
    {"code": "consult", "zh-CN": "咨询", "en": "Question"},
    {"code": "fault", "zh-CN": "故障报修", "en": "Fault / repair"},
    {"code": "complaint", "zh-CN": "投诉", "en": "Complaint"},
    {"code": "return", "zh-CN": "退换货", "en": "Return or exchange"},
    {"code": "invoice", "zh-CN": "发票", "en": "Invoice"},
    {"code": "other", "zh-CN": "其他", "en": "Other"},
]
OPEN_STATUSES = ("open", "assigned", "in_progress")
UploadId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]  # an upload's id (POST /uploads), checked by the upload service


class TicketCreate(RequestModel):
    category: TicketCategory
    title: SingleLine = Field(min_length=1, max_length=100)
    description: MultiLine = Field(min_length=1, max_length=5000)
    priority: TicketPriority = "normal"
    attachments: list[UploadId] = Field(default_factory=list, max_length=9, description="Upload ids (POST /uploads): images or PDF")
    lead_id: SingleLine | None = Field(
        None, min_length=1, max_length=64,
        description="Staff: the lead (customer) the ticket is for, in your scope. Customers: one of their own leads; default their latest",
    )


class ReplyCreate(RequestModel):
    body: MultiLine = Field(min_length=1, max_length=5000)
    internal: bool = Field(False, description="Staff only: a note for colleagues, never shown to the customer")
    attachments: list[UploadId] = Field(default_factory=list, max_length=9, description="Upload ids (POST /uploads)")


class TicketAssign(Versioned):
    assignee_id: str | None = Field(None, pattern=OBJECT_ID_PATTERN, description="An active rep or manager of the ticket's team; leave out to dispatch by rule again")


class TicketAction(Versioned):
    """Start, resolve or close: the version you last read (or If-Match)."""

    note: MultiLine | None = Field(None, max_length=1000, description="Resolve: how it was solved (staff only, kept on the ticket)")


class TicketReopen(Versioned):
    reason: SingleLine | None = Field(None, max_length=200)


class TicketQuery(PageQuery):
    status: TicketStatus | None = None
    priority: TicketPriority | None = None
    category: TicketCategory | None = None
    assignee_id: str | None = Field(None, pattern=OBJECT_ID_PATTERN, description="Staff only")
    breached: bool | None = Field(None, description="true: tickets that missed an SLA")
    lead_id: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$", description="Staff only: one lead's tickets")


class CategoryOut(OutModel):
    code: str
    label: str
    label_en: str


class CategoriesOut(OutModel):
    items: list[CategoryOut]


class AttachmentOut(OutModel):
    id: str
    name: str | None = None
    content_type: str | None = None
    size: int | None = None


class AssignmentOut(OutModel):
    assignee_id: str | None = None
    rule_id: str | None = None
    strategy: str
    reason: LocalizedStr
    at: IsoDatetime


class ReplyOut(OutModel):
    id: str
    author_id: str | None = None
    author_role: str
    internal: bool = False
    body: str
    attachments: list[AttachmentOut] = []
    created_at: IsoDatetime


class TicketOut(OutModel):
    """Customers get the ticket without the staff-only fields (assignment reason, SLA flags,
    resolution note, lead owner): those are null for them."""

    id: str
    lead_id: str
    team_id: str | None = None
    customer_id: str | None = None
    category: TicketCategory
    priority: TicketPriority
    title: str
    description: str
    attachments: list[AttachmentOut] = []
    status: TicketStatus
    assignee_id: str | None = None
    assignment: AssignmentOut | None = None
    opened_by: Literal["customer", "staff"]
    first_response_due_at: IsoDatetime | None = None
    resolution_due_at: IsoDatetime | None = None
    first_response_at: IsoDatetime | None = None
    resolved_at: IsoDatetime | None = None
    closed_at: IsoDatetime | None = None
    breached: list[str] | None = None
    escalated: bool | None = None
    resolution_note: str | None = None
    reopen_count: int = 0
    reply_count: int = 0
    version: int
    created_at: IsoDatetime
    updated_at: IsoDatetime


class TicketDetailOut(TicketOut):
    replies: list[ReplyOut] = Field(default_factory=list, description="Oldest first; customers never see internal replies")


class TicketPage(OutModel):
    items: list[TicketOut]
    next_cursor: str | None = None


__all__ = [
    "CATEGORIES", "OPEN_STATUSES", "UploadId", "CategoriesOut", "ReplyCreate", "ReplyOut", "TicketAction", "TicketAssign", "TicketCreate",
    "TicketDetailOut", "TicketOut", "TicketPage", "TicketQuery", "TicketReopen",
]
