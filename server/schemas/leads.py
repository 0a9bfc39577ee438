from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from server.schemas.common import IsoDatetime, OutModel, RequestModel

RevealField = Literal["phone"]


class AssignmentOut(OutModel):
    owner_id: str
    rule_id: str | None = None
    strategy: str
    reason: str
    at: IsoDatetime


class SourceOut(OutModel):
    kind: str
    form_slug: str | None = None
    form_version: int | None = None
    channel: str | None = None
    campaign: str | None = None


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
    data: dict[str, Any] = {}
