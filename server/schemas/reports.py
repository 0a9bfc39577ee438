"""Report queries and answers (docs/reports.md). Dates are business-time-zone days, inclusive."""

from __future__ import annotations

from datetime import date

from pydantic import ConfigDict, Field

from server.schemas.common import IsoDatetime, OutModel, QueryModel, SaneDate, SingleLine


class ReportRange(QueryModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, populate_by_name=True)

    from_: SaneDate = Field(alias="from", description="First day (YYYY-MM-DD, business time zone), inclusive")
    to: SaneDate = Field(description="Last day (YYYY-MM-DD, business time zone), inclusive; at most 366 days after from")
    team_id: SingleLine | None = Field(None, max_length=64, description="Admins: one team (default all); managers: their own only")


class TeamQuery(QueryModel):
    team_id: SingleLine | None = Field(None, max_length=64)


class StageRow(OutModel):
    stage: str
    entered: int
    at_start: int
    now: int


class MoveRow(OutModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, serialize_by_alias=True)

    from_: str = Field(alias="from")
    to: str
    count: int
    base: int
    rate: float | None


class FunnelOut(OutModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, serialize_by_alias=True)

    team_id: str | None
    from_: date = Field(alias="from")
    to: date
    created: int
    conversions: int
    conversion_rate: float | None
    stages: list[StageRow]
    moves: list[MoveRow]
    path: list[MoveRow]


class RepRow(OutModel):
    rep_id: str
    name: str | None = None
    team_id: str | None = None
    new_leads: int
    created: int
    followups: int
    visits: int
    conversions: int
    conversion_rate: float | None
    overdue_tasks: int
    first_responses: int
    median_first_response_min: int | None
    first_response_histogram: list[int]


class RepsOut(OutModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, serialize_by_alias=True)

    team_id: str | None
    from_: date = Field(alias="from")
    to: date
    buckets_min: list[int]
    overdue_counted_at: IsoDatetime | None = Field(None, description="when overdue_tasks were counted (the count_overdue_tasks job, every minute); null before its first run")
    items: list[RepRow]


class LifecycleOut(OutModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, serialize_by_alias=True)

    team_id: str | None
    from_: date = Field(alias="from")
    to: date
    now: dict[str, int]
    customers_now: int
    customers_at_start: int
    new_customers: int
    into_at_risk: int
    saved: int
    churned: int
    won_back: int
    churn_rate: float | None


class RfmThresholds(OutModel):
    recency_days: list[int]
    frequency: list[int]
    monetary_fen: list[int]
    layer_scores: dict[str, int]
    window_days: int


class RfmOut(OutModel):
    team_id: str | None
    computed_on: str | None
    counts: dict[str, int]
    thresholds: RfmThresholds
