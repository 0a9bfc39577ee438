from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator
from pydantic.json_schema import JsonDict

from server.schemas.common import IsoDatetime, LocalizedStr, OutModel, PageQuery, PatchModel, RequestModel, SingleLine, check_single_line
from server.schemas.forms import FieldKey, Label
from server.schemas.team_settings import Level, Priority
from server.schemas.users import OBJECT_ID_PATTERN, Tag

Strategy = Literal["round_robin", "weighted", "least_loaded", "performance"]
# A lead rule allocates new leads; a ticket rule dispatches service tickets to service staff.
Kind = Literal["lead", "ticket"]
TICKET_STRATEGIES = ("round_robin", "weighted", "least_loaded")
HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"
# A ticket category code (the ticket service's catalogue), e.g. "complaint".
CategoryCode = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")]
# Field constraints before the text check, so that the pattern shows in the OpenAPI document.
City = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^$.]+$"), AfterValidator(check_single_line)]
AnswerValue = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^$.]+$"), AfterValidator(check_single_line)]
# A dict keyed by form field keys: other keys are refused, and the OpenAPI document says so.
ONLY_FIELD_KEYS: JsonDict = {"additionalProperties": False}


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
    """Every list means "any of these"; an empty list (or a missing field) matches every lead, so an
    empty match matches all. All the given fields must match."""

    tags_any: list[Tag] = Field(default_factory=list, max_length=50, description="Empty: any tags")
    source: str | None = Field(None, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$", description="Form slug")
    city: list[City] = Field(default_factory=list, max_length=50, description="The lead's city, exactly")
    level: list[Level] = Field(default_factory=list, max_length=3, description="The lead's level (its RFM layer where the team's rfm.drives_allocation is set)")
    layer: list[Level] = Field(default_factory=list, max_length=3, description="The lead's RFM layer")
    channel: list[Label] = Field(default_factory=list, max_length=50, description="The lead's source channel (source.channel)")
    campaign: list[Label] = Field(default_factory=list, max_length=50, description="The lead's campaign (source.campaign)")
    answers: dict[FieldKey, Annotated[list[AnswerValue], Field(min_length=1, max_length=50)]] = Field(
        default_factory=dict, max_length=10, description="Custom form answers, e.g. {\"industry\": [\"制造\", \"零售\"]}: the lead's answer is one of these",
        json_schema_extra=ONLY_FIELD_KEYS,
    )
    categories: list[CategoryCode] = Field(default_factory=list, max_length=50, description="Ticket rules: the ticket's category")
    priorities: list[Priority] = Field(default_factory=list, max_length=4, description="Ticket rules: the ticket's priority")

    @model_validator(mode="after")
    def _distinct(self) -> RuleMatch:
        for name in ("tags_any", "city", "level", "layer", "channel", "campaign", "categories", "priorities"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ValueError(f"{name}: each value once")
        return self


class PerformanceParams(RequestModel):
    """The ``performance`` strategy (按业绩分配): shares follow each member's conversion score."""

    window_days: int = Field(30, ge=1, le=365, description="Trailing window of the conversion score, in business days")
    revenue_weight: float = Field(0.0, ge=0, le=1, description="0: conversions only; 1: collected revenue only; between: a blend")
    floor_share: float = Field(0.05, ge=0, le=0.5, description="The least share any available member gets, so new reps still get leads")


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
        performance = getattr(self, "performance", None)
        if performance is not None and strategy not in (None, "performance"):
            raise ValueError("performance applies to the performance strategy only")
        if performance is not None and members is not None and performance.floor_share * len(members) > 1:
            raise ValueError("floor_share times the number of members must not exceed 1")
        return self


class RuleCreate(_RuleFields):
    name: SingleLine = Field(min_length=1, max_length=64)
    team_id: str = Field(pattern=OBJECT_ID_PATTERN)
    kind: Kind = Field("lead", description="lead: allocates new leads; ticket: dispatches service tickets to the team's service staff")
    priority: int = Field(100, ge=0, le=10000, description="Lower runs first")
    match: RuleMatch = Field(default_factory=RuleMatch)
    strategy: Strategy
    members: list[str] = Field(default_factory=list, max_length=200)
    weights: list[int] | None = Field(None, max_length=200)
    performance: PerformanceParams | None = Field(None, description="performance strategy only; defaults when left out")
    daily_quota: int | None = Field(None, ge=1, le=10000, description="Most leads a member gets from this team per day")
    working_hours: WorkingHours | None = None
    active: bool = True

    @model_validator(mode="after")
    def _members_when_active(self) -> RuleCreate:
        if self.active and not self.members:
            raise ValueError("an active rule needs members")
        if self.weights is not None and any(w < 1 or w > 100 for w in self.weights):
            raise ValueError("weights are 1..100")
        if self.kind == "ticket":
            if self.strategy not in TICKET_STRATEGIES:
                raise ValueError(f"a ticket rule's strategy is one of {', '.join(TICKET_STRATEGIES)}")
            if self.daily_quota is not None:
                raise ValueError("daily_quota applies to lead rules only")
        elif self.match.categories or self.match.priorities:
            raise ValueError("categories and priorities apply to ticket rules only")
        if self.strategy == "performance" and self.performance is None:
            self.performance = PerformanceParams()
        return self


class RuleUpdate(PatchModel, _RuleFields):
    """null clears weights, the daily quota or the working hours; nothing else."""

    nullable = frozenset({"weights", "daily_quota", "working_hours", "performance"})
    name: SingleLine | None = Field(None, min_length=1, max_length=64)
    priority: int | None = Field(None, ge=0, le=10000)
    match: RuleMatch | None = None
    strategy: Strategy | None = None
    members: list[str] | None = Field(None, max_length=200)
    weights: list[int] | None = Field(None, max_length=200)
    performance: PerformanceParams | None = None
    daily_quota: int | None = Field(None, ge=1, le=10000)
    working_hours: WorkingHours | None = None
    active: bool | None = None


class RuleQuery(PageQuery):
    team_id: str | None = Field(None, pattern=OBJECT_ID_PATTERN)


class PerformanceOut(OutModel):
    window_days: int = 30
    revenue_weight: float = 0.0
    floor_share: float = 0.05


class RuleOut(OutModel):
    id: str
    name: str
    team_id: str
    kind: Kind = "lead"
    priority: int
    match: dict
    strategy: Strategy
    members: list[str]
    weights: list[int] | None = None
    performance: PerformanceOut | None = None
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
    """A sample lead (or, for a ticket rule, a sample ticket's category and priority)."""

    tags: list[Tag] = Field(default_factory=list, max_length=50)
    source: SingleLine | None = Field(None, max_length=64)
    city: City | None = None
    level: Level | None = None
    layer: Level | None = None
    channel: Label | None = None
    campaign: Label | None = None
    # Each answer as a list (one value for a single-choice field): one shape, so a bad value gets
    # one clear error at its own place rather than one per branch of a union.
    answers: dict[FieldKey, Annotated[list[AnswerValue], Field(max_length=50)]] = Field(
        default_factory=dict, max_length=50, json_schema_extra=ONLY_FIELD_KEYS,
        description='The sample lead\'s form answers, e.g. {"industry": ["制造"]}',
    )
    category: CategoryCode | None = None
    priority: Priority | None = None


class UnsavedPreviewIn(RequestModel):
    """``POST /allocation-rules/preview``: a rule as for create (not saved) and a sample lead."""

    rule: RuleCreate
    lead: PreviewIn = Field(default_factory=PreviewIn)


class PreviewOut(OutModel):
    matched: bool
    rule_id: str | None = None
    owner_id: str | None = None
    owner_name: str | None = None
    strategy: str | None = None
    reason: LocalizedStr


# ---------------------------------------------------------------- bulk assign (POST /leads/assign)
BULK_ASSIGN_LIMIT = 500
LeadId = Annotated[str, Field(pattern=r"^([0-9a-f]{24}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$")]
BulkStage = Literal["new", "contacted", "qualified", "customer", "retained", "at_risk", "churned", "won_back", "lost"]
SkipReason = Literal["not_found", "already_owner", "other_team", "nobody_available", "changed"]


class BulkFilter(RequestModel):
    """Leads in the caller's scope (a manager: their team) with all of these; an admin names the team."""

    team_id: str | None = Field(None, pattern=OBJECT_ID_PATTERN, description="Admins: required; managers: their own team or left out")
    stage: BulkStage | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=20, description="Any of these tags")
    owner_id: str | None = Field(None, pattern=OBJECT_ID_PATTERN)
    pool: bool | None = Field(None, description="true: in the team's public pool")


class BulkAssignIn(RequestModel):
    ids: list[LeadId] | None = Field(None, min_length=1, max_length=BULK_ASSIGN_LIMIT, json_schema_extra={"uniqueItems": True})
    filter: BulkFilter | None = None
    to_user_id: str | None = Field(None, pattern=OBJECT_ID_PATTERN, description="Everything to this rep or manager")
    rule_id: str | None = Field(None, pattern=OBJECT_ID_PATTERN, description="Or shared out by this lead rule's strategy and members")
    reason: SingleLine | None = Field(None, min_length=1, max_length=200)
    dry_run: bool = Field(False, description="true: the preview only, nothing written")

    @model_validator(mode="after")
    def _one_of_each(self) -> BulkAssignIn:
        if (self.ids is None) == (self.filter is None):
            raise ValueError("send either ids or filter")
        if (self.to_user_id is None) == (self.rule_id is None):
            raise ValueError("send either to_user_id or rule_id")
        if self.ids is not None and len(set(self.ids)) != len(self.ids):
            raise ValueError("ids must be distinct")
        return self


class BulkTargetOut(OutModel):
    owner_id: str
    owner_name: str
    count: int


class BulkSkipOut(OutModel):
    reason: SkipReason
    count: int
    lead_ids: list[str] = Field(default_factory=list, description="Empty for not_found: leads outside your scope are never named")


class BulkAssignOut(OutModel):
    run_id: str | None = Field(None, description="The run's id (null for a dry run)")
    dry_run: bool
    requested: int = Field(description="Ids sent, or leads the filter matched")
    assigned: int = Field(description="Assigned (or, in a dry run, that would be)")
    to: list[BulkTargetOut]
    skipped: list[BulkSkipOut]
