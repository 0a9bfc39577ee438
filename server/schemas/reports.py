"""Report queries and answers (docs/reports.md). Dates are business-time-zone days, inclusive."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import ConfigDict, Field

from server.schemas.common import IsoDatetime, LocalizedStr, OutModel, QueryModel, SaneDate, SingleLine


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


class ReasonRow(OutModel):
    code: str
    label: LocalizedStr = Field(description="In the caller's language (the catalogue's label / label_en)")
    count: int
    share: float | None = Field(description="Of all coded moves in the period; null when there were none")


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
    lost_reasons: list[ReasonRow] = Field(default_factory=list, description="Leads moved to lost in the period, by the team's reason codes")


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
    churn_reasons: list[ReasonRow] = Field(default_factory=list, description="Customers moved to churned in the period, by the team's reason codes")


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


class RevenueQuery(ReportRange):
    group_by: Literal["rep", "team", "source", "channel", "campaign", "month"] = Field(
        "rep", description="rep (contract owner), team, source (lead source kind: form, manual, import), channel, campaign, or month")


class MoneyRow(OutModel):
    signed_count: int = Field(description="Contracts signed (approval completed) in the period")
    signed_fen: int = Field(description="Their amounts")
    new_count: int
    new_fen: int = Field(description="Signed: the customer's first contract")
    renewal_count: int
    renewal_fen: int = Field(description="Signed: a contract that renews another")
    repurchase_count: int
    repurchase_fen: int = Field(description="Signed: a second or later contract that is not a renewal")
    collected_fen: int = Field(description="Payments received in the period (by received_at)")
    payments: int
    outstanding_fen: int = Field(description="Now: unpaid amounts of signed contracts (as of money_counted_at)")
    overdue_fen: int = Field(description="Now: the part of outstanding whose instalments are past due")


class RevenueRow(MoneyRow):
    key: str | None = Field(description="The group's value: rep or team id, source kind, channel, campaign, YYYY-MM; null: none recorded")
    name: str | None = None


class RevenueOut(OutModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, serialize_by_alias=True)

    team_id: str | None
    from_: date = Field(alias="from")
    to: date
    group_by: str
    money_counted_at: IsoDatetime | None = Field(None, description="When outstanding and overdue were counted (the count_money job); null before its first run")
    totals: MoneyRow
    items: list[RevenueRow]


class CohortRow(OutModel):
    month: str = Field(description="The month of the customers' first contract (YYYY-MM)")
    customers: int
    active: list[int] = Field(description="active[n]: customers of the cohort with a contract running n months later (n = 0 … 12, up to this month)")
    retention: list[float | None]


class RetentionOut(OutModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, serialize_by_alias=True)

    team_id: str | None
    from_: date = Field(alias="from")
    to: date
    contracts_ending: int = Field(description="Signed contracts whose end_date is in the period (counted once ended)")
    renewed: int = Field(description="Of those, renewed (the renewal signed)")
    renewal_rate: float | None
    repurchases: int = Field(description="Repurchase contracts signed in the period")
    customers_at_start: int
    repurchase_rate: float | None = Field(description="repurchases / customers_at_start")
    churned: int
    won_back: int
    cohorts: list[CohortRow] = Field(description="Cohorts whose first-contract month is in the period")
    cohorts_counted_at: IsoDatetime | None = None
