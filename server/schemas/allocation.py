from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from server.schemas.common import IsoDatetime, LocalizedStr, OutModel, PageQuery, PatchModel, RequestModel, SingleLine
from server.schemas.users import OBJECT_ID_PATTERN, Tag

Strategy = Literal["round_robin", "weighted", "least_loaded"]
HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"


class WorkingHours(RequestModel):
    # The bounds and the uniqueness are in the schema too (OpenAPI), not only in _check.
    days: list[Annotated[int, Field(ge=1, le=7)]] = Field(
        default_factory=lambda: [1, 2, 3, 4, 5], min_length=1, max_length=7, description="ISO weekdays, 1 = Monday",
        json_schema_extra={"uniqueItems": True},
    )
    start: str = Field("09:00", pattern=HHMM)
    end: str = Field("18:00", pattern=HHMM)

    @model_validator(mode="after")
    def _check(self) -> WorkingHours:
        if any(d < 1 or d > 7 for d in self.days) or len(set(self.days)) != len(self.days):
            raise ValueError("days are distinct ISO weekdays 1..7")
        if self.start >= self.end:
            raise ValueError("start must be before end")
        return self


class RuleMatch(RequestModel):
    tags_any: list[Tag] = Field(default_factory=list, max_length=50, description="Empty: any tags")
    source: str | None = Field(None, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$", description="Form slug")


class _RuleFields(RequestModel):
    @model_validator(mode="after")
    def _weights(self):
        members = getattr(self, "members", None)
        weights = getattr(self, "weights", None)
        strategy = getattr(self, "strategy", None)
        if members is not None and len(set(members)) != len(members):
            raise ValueError("members must be distinct")
        if weights is not None and members is not None and len(weights) != len(members):
            raise ValueError("weights must give one weight per member")
        if strategy == "weighted" and members is not None and weights is None:
            raise ValueError("a weighted rule needs weights")
        if weights is not None and strategy not in (None, "weighted"):
            raise ValueError("weights apply to the weighted strategy only")
        return self


class RuleCreate(_RuleFields):
    name: SingleLine = Field(min_length=1, max_length=64)
    team_id: str = Field(pattern=OBJECT_ID_PATTERN)
    priority: int = Field(100, ge=0, le=10000, description="Lower runs first")
    match: RuleMatch = Field(default_factory=RuleMatch)
    strategy: Strategy
    members: list[str] = Field(default_factory=list, max_length=200)
    weights: list[int] | None = Field(None, max_length=200)
    daily_quota: int | None = Field(None, ge=1, le=10000, description="Most leads a member gets from this team per day")
    working_hours: WorkingHours | None = None
    active: bool = True

    @model_validator(mode="after")
    def _members_when_active(self) -> RuleCreate:
        if self.active and not self.members:
            raise ValueError("an active rule needs members")
        if self.weights is not None and any(w < 1 or w > 100 for w in self.weights):
            raise ValueError("weights are 1..100")
        return self


class RuleUpdate(PatchModel, _RuleFields):
    """null clears weights, the daily quota or the working hours; nothing else."""

    nullable = frozenset({"weights", "daily_quota", "working_hours"})
    name: SingleLine | None = Field(None, min_length=1, max_length=64)
    priority: int | None = Field(None, ge=0, le=10000)
    match: RuleMatch | None = None
    strategy: Strategy | None = None
    members: list[str] | None = Field(None, max_length=200)
    weights: list[int] | None = Field(None, max_length=200)
    daily_quota: int | None = Field(None, ge=1, le=10000)
    working_hours: WorkingHours | None = None
    active: bool | None = None


class RuleQuery(PageQuery):
    team_id: str | None = Field(None, pattern=OBJECT_ID_PATTERN)


class RuleOut(OutModel):
    id: str
    name: str
    team_id: str
    priority: int
    match: dict
    strategy: Strategy
    members: list[str]
    weights: list[int] | None = None
    daily_quota: int | None = None
    working_hours: dict | None = None
    active: bool
    turn: int = 0
    version: int
    created_at: IsoDatetime
    updated_at: IsoDatetime


class RulePage(OutModel):
    items: list[RuleOut]
    next_cursor: str | None = None


class PreviewIn(RequestModel):
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    source: SingleLine | None = Field(None, max_length=64)


class PreviewOut(OutModel):
    matched: bool
    rule_id: str | None = None
    owner_id: str | None = None
    owner_name: str | None = None
    strategy: str | None = None
    reason: LocalizedStr
