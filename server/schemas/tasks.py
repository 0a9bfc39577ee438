"""Tasks (待办) and WeChat subscription reports."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from server.schemas.common import IsoDatetime, OutModel, PageQuery, PatchModel, RequestModel, SaneDatetime, SingleLine, Versioned
from server.schemas.users import OBJECT_ID_PATTERN

TaskStatus = Literal["open", "done"]


class TaskCreate(RequestModel):
    title: SingleLine = Field(min_length=1, max_length=100)
    lead_id: SingleLine | None = Field(None, min_length=1, max_length=64)
    assignee_id: str | None = Field(None, pattern=OBJECT_ID_PATTERN, description="Default: you")
    due_at: SaneDatetime
    remind_at: SaneDatetime | None = Field(None, description="Must not be after due_at")


class TaskUpdate(PatchModel):
    """Only ``remind_at`` may be cleared; a task always has a title, an assignee and a due time."""

    nullable = frozenset({"remind_at"})
    title: SingleLine | None = Field(None, min_length=1, max_length=100)
    assignee_id: str | None = Field(None, pattern=OBJECT_ID_PATTERN)
    due_at: SaneDatetime | None = None
    remind_at: SaneDatetime | None = None


class TaskComplete(Versioned):
    pass


class TaskQuery(PageQuery):
    status: TaskStatus | None = None
    due_before: SaneDatetime | None = None


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
    contract_id: str | None = Field(None, description="Return visits (kind return_visit): the contract")
    followup_id: str | None = Field(None, description="Return visits: the follow-up that recorded it")
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
