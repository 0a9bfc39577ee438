"""The service report's answer (docs/reports.md "Service"). The query is ``ReportRange``."""

from __future__ import annotations

from datetime import date

from pydantic import ConfigDict, Field

from server.schemas.common import OutModel


class ServiceFigures(OutModel):
    tickets_opened: int | None = Field(None, description="Tickets opened in the period (null on a handler's row)")
    tickets_assigned: int = Field(description="Assignments of tickets (to the handler, on a handler's row)")
    tickets_resolved: int
    tickets_reopened: int
    first_responses: int
    median_first_response_min: int | None = Field(description="Upper bound of the histogram bucket holding the median; null: none, or slower than the last bound")
    first_response_histogram: list[int]
    resolutions_timed: int
    median_resolution_h: int | None
    resolution_histogram: list[int]
    resolved_breached: int = Field(description="Resolutions of tickets that breached an SLA (first response or resolution)")
    sla_breach_rate: float | None = Field(description="resolved_breached / tickets_resolved")
    breaches_first_response: int
    breaches_resolution: int
    surveys_answered: int
    csat_avg: float | None
    nps_answers: int
    nps_promoters: int
    nps_detractors: int
    nps: float | None = Field(description="promoters% − detractors% (−100 to 100)")


class ServiceTeamRow(ServiceFigures):
    team_id: str
    name: str | None = None


class ServiceHandlerRow(ServiceFigures):
    handler_id: str
    name: str | None = None
    team_id: str | None = None


class ServiceReportOut(OutModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, serialize_by_alias=True)

    team_id: str | None
    from_: date = Field(alias="from")
    to: date
    first_response_buckets_min: list[int]
    resolution_buckets_h: list[int]
    totals: ServiceFigures
    teams: list[ServiceTeamRow]
    handlers: list[ServiceHandlerRow]
