"""Satisfaction surveys (满意度调查): one CSAT question (1–5), one NPS question (0–10), a comment."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from server.schemas.common import IsoDatetime, MultiLine, OutModel, PageQuery, RequestModel, SingleLine

SurveyStatus = Literal["pending", "answered"]
SurveySource = Literal["ticket", "contract"]


class SurveyAnswer(RequestModel):
    """Whole numbers only (strict: ``"5"``, ``4.0`` or ``true`` are 422)."""

    csat: int = Field(ge=1, le=5, description="How satisfied: 1 (very unhappy) to 5 (very happy)")
    nps: int = Field(ge=0, le=10, description="How likely to recommend us: 0 to 10")
    comment: MultiLine | None = Field(None, max_length=1000)


class SurveyQuery(PageQuery):
    status: SurveyStatus | None = None
    lead_id: SingleLine | None = Field(None, min_length=1, max_length=64, description="Staff: one lead's surveys")


class SurveyOut(OutModel):
    """What the customer sees of their own survey: no staff ids, no lead."""

    id: str
    source: SurveySource
    status: SurveyStatus
    csat: int | None = None
    nps: int | None = None
    comment: str | None = None
    offered_at: IsoDatetime
    answered_at: IsoDatetime | None = None
    version: int


class StaffSurveyOut(SurveyOut):
    """Staff see whom it is about and who handled the ticket (customers get none of these fields)."""

    lead_id: str | None = None
    team_id: str | None = None
    owner_id: str | None = None
    source_id: str | None = None
    ticket_id: str | None = None
    contract_id: str | None = None
    handler_id: str | None = None
    customer_id: str | None = None


class SurveyPage(OutModel):
    items: list[SurveyOut]
    next_cursor: str | None = None


class StaffSurveyPage(OutModel):
    items: list[StaffSurveyOut]
    next_cursor: str | None = None
