"""Hand-over (交接) of a user's work to someone else: the request, the preview and the progress."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from server.schemas.common import IsoDatetime, OutModel, RequestModel, SingleLine
from server.schemas.users import OBJECT_ID_PATTERN

Kind = Literal["leads", "contracts", "tasks", "tickets"]
ALL_KINDS: tuple[Kind, ...] = ("leads", "contracts", "tasks", "tickets")
KINDS: tuple[str, ...] = ("leads", "contracts", "tasks", "tickets")


class HandoverIn(RequestModel):
    """To one person (``to_user_id``) or through an allocation rule (``rule_id``, leads only)."""

    to_user_id: str | None = Field(None, pattern=OBJECT_ID_PATTERN, description="An active rep or manager (of the same team unless you are an admin)")
    rule_id: str | None = Field(None, pattern=OBJECT_ID_PATTERN, description="A lead allocation rule of the user's team: each lead goes to whom the rule picks")
    include: list[Kind] = Field(default_factory=lambda: list(ALL_KINDS), min_length=1, max_length=4)
    deactivate: bool = Field(False, description="Deactivate the user once everything is handed over (admins)")
    reason: SingleLine | None = Field(None, max_length=200, description="Written on each lead's timeline")

    @model_validator(mode="after")
    def _one_target(self) -> HandoverIn:
        if (self.to_user_id is None) == (self.rule_id is None):
            raise ValueError("give either to_user_id or rule_id")
        if len(set(self.include)) != len(self.include):
            raise ValueError("include: each kind once")
        return self


class KindProgress(OutModel):
    total: int
    done: int


class HandoverOut(OutModel):
    id: str
    from_user_id: str
    to_user_id: str | None = None
    rule_id: str | None = None
    pool: bool = Field(False, description="Open leads go to the team's pool (deactivation with the team's handover.on_deactivate = pool)")
    include: list[str]
    deactivate: bool = False
    status: Literal["running", "done", "failed"]
    progress: dict[str, KindProgress]
    failure: str | None = None
    created_by: str
    created_at: IsoDatetime
    updated_at: IsoDatetime | None = None
    finished_at: IsoDatetime | None = None


class ContractCounts(OutModel):
    total: int
    by_status: dict[str, int]


class WorkCounts(OutModel):
    leads: int = Field(description="Leads the user owns (every stage)")
    open_leads: int = Field(description="Of them, in an open stage (new to qualified, at risk)")
    contracts: ContractCounts
    tasks: int = Field(description="Open tasks that are not a lead's follow-up (those follow their lead)")
    followup_tasks: int = Field(description="Open follow-up tasks: they move with their leads")
    tickets: int | None = Field(None, description="Open tickets; null where tickets cannot be handed over")


class Skipped(OutModel):
    kind: str
    count: int
    reason: Literal["not_included", "follows_lead", "not_available"]


class TargetOut(OutModel):
    user_id: str | None = None
    name: str | None = None
    rule_id: str | None = None
    rule_name: str | None = None
    members: list[str] = []


class HandoverPreviewOut(OutModel):
    from_user_id: str
    include: list[str]
    counts: WorkCounts
    target: TargetOut
    moves: dict[str, int] = Field(description="What a run would move now, per kind")
    skipped: list[Skipped]
