"""Spreadsheet import (progress report) and lead export."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from server.schemas.common import IsoDatetime, OutModel, QueryModel

ImportStatus = Literal["queued", "running", "done", "failed"]


class ImportAccepted(OutModel):
    import_id: str


class RejectedRowOut(OutModel):
    row: int = Field(description="The spreadsheet row number (the header is row 1)")
    code: str
    field: str | None = None
    message: str


class ImportOut(OutModel):
    id: str
    status: ImportStatus
    format: str
    filename: str | None = None
    team_id: str
    allocate: Literal["pool", "rules"] = Field("pool", description="pool: new leads go to the team's pool; rules: through its allocation rules")
    total: int
    done: int
    created: int
    merged: int
    rejected_count: int
    rejected: list[RejectedRowOut] = Field(description="The first rejected rows; all of them in errors.csv")
    created_by: str
    created_at: IsoDatetime
    finished_at: IsoDatetime | None = None


class ExportQuery(QueryModel):
    format: Literal["csv", "xlsx"] = "csv"
