"""Tasks (待办) and WeChat subscription reports."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator

from server.schemas.common import IsoDatetime, OutModel, PageQuery, RequestModel, Versioned
from server.schemas.users import OBJECT_ID_PATTERN

TaskStatus = Literal["open", "done"]


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("give a UTC offset, e.g. 2026-11-23T09:00:00+08:00")
    return value


class TaskCreate(RequestModel):
    title: str = Field(min_length=1, max_length=100)
    lead_id: str | None = Field(None, min_length=1, max_length=64)
    assignee_id: str | None = Field(None, pattern=OBJECT_ID_PATTERN, description="Default: you")
    due_at: datetime
    remind_at: datetime | None = Field(None, description="Must not be after due_at")

    _tz = field_validator("due_at", "remind_at")(_aware)


class TaskUpdate(Versioned):
    title: str | None = Field(None, min_length=1, max_length=100)
    assignee_id: str | None = Field(None, pattern=OBJECT_ID_PATTERN)
    due_at: datetime | None = None
    remind_at: datetime | None = None

    _tz = field_validator("due_at", "remind_at")(_aware)


class TaskComplete(Versioned):
    pass


class TaskQuery(PageQuery):
    status: TaskStatus | None = None
    due_before: datetime | None = None

    _tz = field_validator("due_before")(_aware)


class TaskOut(OutModel):
    id: str
    title: str
    kind: str = "manual"
    lead_id: str | None = None
    assignee_id: str | None = None
    team_id: str | None = None
    status: TaskStatus
    due_at: IsoDatetime
    remind_at: IsoDatetime | None = None
    completed_at: IsoDatetime | None = None
    version: int
    created_at: IsoDatetime
    updated_at: IsoDatetime


class TaskPage(OutModel):
    items: list[TaskOut]
    next_cursor: str | None = None


class SubscriptionIn(RequestModel):
    template_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_\-]+$")
    accepted: bool


class SubscriptionOut(OutModel):
    template_id: str
    remaining: int
