from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from server.schemas.common import IsoDatetime, LocalizedData, LocalizedStr, MultiLine, OutModel, PageQuery, PatchModel, RequestModel, SaneDatetime, SingleLine, Versioned
from server.schemas.uploads import AttachmentOut, Attachments
from server.schemas.users import OBJECT_ID_PATTERN, Tag

RevealField = Literal["phone"]


class AssignmentOut(OutModel):
    owner_id: str
    rule_id: str | None = None
    strategy: str
    reason: LocalizedStr
    at: IsoDatetime


class SourceOut(OutModel):
    kind: str
    form_slug: str | None = None
    form_version: int | None = None
    channel: str | None = None
    campaign: str | None = None
    referrer_id: str | None = Field(None, description="The staff member whose shared form brought the lead")


class LeadOut(OutModel):
    """What phones and the console see: the phone is always masked."""

    id: str
    name: str
    company: str | None = None
    phone: str | None = Field(None, description="Masked, e.g. 138****8000")
    tags: list[str] = []
    stage: str
    owner_id: str | None = None
    team_id: str | None = None
    source: SourceOut
    level: str | None = None
    layer: str | None = None
    lifetime_value_fen: int = Field(0, description="Money received from this customer to date (payments on all its contracts), in fen")
    pool: bool = False
    winback_candidate: bool = False
    next_followup_at: IsoDatetime | None = None
    last_activity_at: IsoDatetime | None = None
    assignment: AssignmentOut | None = None
    version: int
    created_at: IsoDatetime
    updated_at: IsoDatetime


class LeadDetailOut(LeadOut):
    notes: str | None = None
    email: str | None = None
    city: str | None = None
    answers: dict[str, Any] | None = Field(None, description="The latest form answers, phone masked")


class RevealIn(RequestModel):
    field: RevealField


class RevealOut(OutModel):
    field: RevealField
    value: str


class EventOut(OutModel):
    id: str
    lead_id: str
    kind: str
    at: IsoDatetime
    actor_id: str | None = None
    actor_role: str | None = None
    data: LocalizedData = {}


# ---------------------------------------------------------------- requests

LEAD_ID_PATTERN = r"^([0-9a-f]{24}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
Stage = Literal["new", "contacted", "qualified", "customer", "retained", "at_risk", "churned", "won_back", "lost"]
Level = Literal["A", "B", "C"]


class LeadCreate(RequestModel):
    id: str | None = Field(None, pattern=LEAD_ID_PATTERN, description="Your own UUID, for offline capture")
    name: SingleLine = Field(min_length=1, max_length=64)
    phone: SingleLine | None = Field(None, max_length=32)
    company: SingleLine | None = Field(None, max_length=100)
    email: SingleLine | None = Field(None, max_length=254)
    city: SingleLine | None = Field(None, max_length=64)
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    notes: MultiLine | None = Field(None, max_length=2000)
    level: Level | None = None
    next_followup_at: SaneDatetime | None = None


class LeadUpdate(PatchModel):
    """null clears the optional details; a name, tags (send []) or ``locked`` cannot be null."""

    nullable = frozenset({"company", "email", "city", "notes", "level", "next_followup_at"})
    name: SingleLine | None = Field(None, min_length=1, max_length=64)
    company: SingleLine | None = Field(None, max_length=100)
    email: SingleLine | None = Field(None, max_length=254)
    city: SingleLine | None = Field(None, max_length=64)
    tags: list[Tag] | None = Field(None, max_length=32)
    notes: MultiLine | None = Field(None, max_length=2000)
    level: Level | None = None
    locked: bool | None = Field(None, description="Locked leads are never reclaimed to the pool")
    next_followup_at: SaneDatetime | None = None


class LeadListQuery(PageQuery):
    stage: Stage | None = None
    tag: SingleLine | None = Field(None, max_length=32)
    owner_id: str | None = Field(None, pattern=OBJECT_ID_PATTERN)
    q: SingleLine | None = Field(None, min_length=1, max_length=50, description="Prefix of the name or company")
    phone: SingleLine | None = Field(None, max_length=32, description="Exact phone number")
    layer: Level | None = None
    winback: bool | None = Field(None, description="true: only churned customers who came back (winback_candidate), the win-back list")
    sort: Literal["updated", "next_followup", "lifetime_value"] = "updated"


class StageChange(Versioned):
    to: Stage
    reason: MultiLine | None = Field(None, min_length=1, max_length=500, description="Free text; for lost / churned an old client's text counts as reason_code other with this note")
    reason_code: str | None = Field(None, min_length=1, max_length=32, pattern=r"^[a-z0-9_]+$", description="lost / churned only: a code of the team's catalogue (team settings reasons.lost / reasons.churn)")
    reason_note: MultiLine | None = Field(None, min_length=1, max_length=500, description="lost / churned only: required with reason_code other")


class LocationIn(RequestModel):
    lat: float = Field(ge=-90, le=90)
    lng: float = Field(ge=-180, le=180)
    address: SingleLine | None = Field(None, max_length=200)
    accuracy_m: float | None = Field(None, ge=0, le=100000)


FollowupKind = Literal["call", "visit", "wechat", "meeting", "note", "return_visit"]
ReturnVisitOutcome = Literal["satisfied", "issue_found", "renewal_interest", "no_answer"]


class FollowupCreate(RequestModel):
    id: str | None = Field(None, pattern=LEAD_ID_PATTERN, description="Your own UUID, for offline capture")
    kind: FollowupKind
    content: MultiLine = Field(min_length=1, max_length=2000)
    location: LocationIn | None = None
    occurred_at: SaneDatetime | None = Field(None, description="When it happened (offline capture); default now")
    next_followup_at: SaneDatetime | None = None
    outcome: ReturnVisitOutcome | None = Field(None, description="Return visits (回访) only, and required there")
    task_id: SingleLine | None = Field(None, min_length=1, max_length=120, description="Return visits: the return-visit task this completes (default: the lead's open ones)")
    attachments: Attachments | None = None


class ReleaseIn(RequestModel):
    reason: MultiLine = Field(min_length=1, max_length=500)


class AssignIn(RequestModel):
    owner_id: str = Field(pattern=OBJECT_ID_PATTERN)
    reason: MultiLine | None = Field(None, max_length=500)


class PoolQuery(PageQuery):
    tag: SingleLine | None = Field(None, max_length=32)


class FollowupOut(OutModel):
    id: str
    lead_id: str
    kind: FollowupKind
    content: str
    location: dict | None = None
    author_id: str
    occurred_at: IsoDatetime
    next_followup_at: IsoDatetime | None = None
    outcome: ReturnVisitOutcome | None = None
    task_id: str | None = None
    attachments: list[AttachmentOut] = []
    created_at: IsoDatetime
    updated_at: IsoDatetime

    @classmethod
    def from_event(cls, event: dict) -> FollowupOut:
        data = event["data"]
        return cls(
            id=str(event["_id"]), lead_id=event["lead_id"], kind=data["kind"], content=data["content"],
            location=data.get("location"), author_id=event["author_id"], occurred_at=data["occurred_at"],
            next_followup_at=data.get("next_followup_at"), outcome=data.get("outcome"), task_id=data.get("task_id"),
            attachments=data.get("attachments") or [],
            created_at=event["at"], updated_at=event["updated_at"],
        )


class LeadPage(OutModel):
    items: list[LeadOut]
    next_cursor: str | None = None


class EventPage(OutModel):
    items: list[EventOut]
    next_cursor: str | None = None
