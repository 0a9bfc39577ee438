"""A team's settings (团队设置): the rules that differ between teams, kept on the team document.

Every group has defaults; the environment (config/settings.py) gives the defaults of the groups it
used to hold globally (approval tiers, churn, renewal and payment reminders, quiet hours, RFM), so
an installation that set them keeps its behaviour until an admin changes a team.
``UserService.team_settings(team_id)`` returns the effective settings of a team (defaults merged
with what the team stored); the services that apply a rule read it from there.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, NoReturn, cast

from pydantic import AfterValidator, Field, ValidationError, ValidationInfo, create_model, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from config.settings import Settings
from server.schemas.common import IsoDatetime, OutModel, PatchModel, RequestModel, SaneDate, SingleLine, _drop_null_from_schema, check_single_line

HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"
Days = Annotated[int, Field(ge=0, le=3650)]
Level = Literal["A", "B", "C"]
Priority = Literal["low", "normal", "high", "urgent"]

# The order checks across a group's fields (thresholds that must ascend, warnings below the churn
# days, tiers in order …) run when an admin changes that group (``TeamSettingsPatch.merged``), not on
# every read: an installation whose environment defaults are out of order keeps the behaviour it had
# (the rules skip what does not apply) until an admin edits the group.
CHECK = "check_groups"


def checking(info: ValidationInfo, group: str) -> bool:
    context = info.context if isinstance(info.context, dict) else {}
    return group in (context.get(CHECK) or ())


def fail(model: str, loc: tuple, code: str, message: str, given: Any = None, **params: Any) -> NoReturn:
    """A validation problem on one field of a group (``loc`` inside the model), so the 422 names
    the field (``churn.warning_days``), not the group. Its code has a zh-CN/en text in
    server/errors.py DETAIL_MESSAGES."""
    raise ValidationError.from_exception_data(model, [InitErrorDetails(type=PydanticCustomError(code, message, params), loc=loc, input=given)])


def _strictly(values: list, *, ascending: bool) -> bool:
    return all((a < b) if ascending else (a > b) for a, b in zip(values, values[1:]))


class BusinessHours(RequestModel):
    """The team's working week: deadlines in business hours run only inside it."""

    days: list[Annotated[int, Field(ge=1, le=7)]] = Field(default_factory=lambda: [1, 2, 3, 4, 5], min_length=1, max_length=7, description="ISO weekdays, 1 = Monday")
    start: str = Field("09:00", pattern=HHMM)
    end: str = Field("18:00", pattern=HHMM)
    holidays: list[SaneDate] = Field(default_factory=list, max_length=366, description="Days off (YYYY-MM-DD)")

    @model_validator(mode="after")
    def _order(self) -> BusinessHours:
        if self.end <= self.start:
            fail("BusinessHours", ("end",), "end_after_start", "must be after start ({start})", self.end, start=self.start)
        if len(set(self.days)) != len(self.days):
            fail("BusinessHours", ("days",), "listed_once", "each value once", self.days)
        return self


ApproverRef = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(check_single_line)]


class ApprovalStep(RequestModel):
    """One approval step: the owner's team ``manager`` (any one), any ``admin``, ``any_of`` or
    ``all_of`` (countersign) the named users (user ids or usernames of active managers or admins)."""

    type: Literal["manager", "admin", "any_of", "all_of"]
    users: list[ApproverRef] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _named(self) -> ApprovalStep:
        if self.type in ("any_of", "all_of") and not self.users:
            fail("ApprovalStep", ("users",), "approvers_required", "an {type} step names its approvers", self.users, type=self.type)
        return self


class ApprovalTier(RequestModel):
    """Contracts up to ``max_fen`` (null: any amount) get these steps, in order."""

    max_fen: int | None = Field(None, ge=1, le=10**15)
    steps: list[ApprovalStep] = Field(min_length=1, max_length=10)


class ApprovalSettings(RequestModel):
    group: ClassVar[str] = "approval"
    tiers: list[ApprovalTier] = Field(min_length=1, max_length=10, description="By max_fen, strictly ascending; only the last one open (max_fen null)")

    @field_validator("tiers")
    @classmethod
    def _in_order(cls, tiers: list[ApprovalTier], info: ValidationInfo) -> list[ApprovalTier]:
        if not checking(info, cls.group):
            return tiers
        for index, tier in enumerate(tiers):
            last = index == len(tiers) - 1
            if tier.max_fen is None and not last:
                fail("ApprovalSettings", (index, "max_fen"), "open_tier_last", "only the last tier is open (null)", None)
            if tier.max_fen is not None and last:
                fail("ApprovalSettings", (index, "max_fen"), "last_tier_open", "the last tier takes any amount (null)", tier.max_fen)
            if index and tier.max_fen is not None and tier.max_fen <= (tiers[index - 1].max_fen or 0):
                fail("ApprovalSettings", (index, "max_fen"), "must_ascend", "must be above the previous value ({previous})", tier.max_fen,
                     previous=tiers[index - 1].max_fen)
        return tiers


class ChurnSettings(RequestModel):
    days: int = Field(90, ge=1, le=3650, description="Customers silent this many days move to at_risk")
    days_by_level: dict[Level, Annotated[int, Field(ge=1, le=3650)]] = Field(default_factory=dict)
    days_by_layer: dict[Level, Annotated[int, Field(ge=1, le=3650)]] = Field(default_factory=dict, description="Per RFM layer; used when rfm.drives_churn")
    warning_days: list[Annotated[int, Field(ge=1, le=3650)]] = Field(default_factory=lambda: [30, 60], max_length=10, description="Earlier warnings to the owner; each below every churn threshold")
    group: ClassVar[str] = "churn"

    @model_validator(mode="after")
    def _warnings_first(self, info: ValidationInfo) -> ChurnSettings:
        if not checking(info, self.group):
            return self
        thresholds = [("days", self.days)] + [(f"days_by_level.{k}", v) for k, v in sorted(self.days_by_level.items())] \
            + [(f"days_by_layer.{k}", v) for k, v in sorted(self.days_by_layer.items())]
        name, lowest = min(thresholds, key=lambda t: t[1])
        for index, days in enumerate(self.warning_days):
            if days >= lowest:
                fail("ChurnSettings", ("warning_days", index), "warning_below_threshold", "must be below {threshold} ({days} days)", days,
                     threshold=f"churn.{name}", days=lowest)
        return self


class ReminderSettings(RequestModel):
    renewal_days: list[Annotated[int, Field(ge=0, le=365)]] = Field(default_factory=lambda: [30, 15, 7, 1], max_length=10)
    renewal_manager_days: int = Field(7, ge=0, le=365)
    payment_days_before: int = Field(3, ge=0, le=365)
    payment_overdue_days: list[Annotated[int, Field(ge=1, le=365)]] = Field(default_factory=lambda: [1, 7, 30], max_length=10)
    quiet_hours: str = Field("21:00-08:00", pattern=r"^(([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d)?$", description="No non-urgent pushes in this window (HH:MM-HH:MM, business time; may span midnight); empty = none")
    group: ClassVar[str] = "reminders"

    @field_validator("quiet_hours")
    @classmethod
    def _window(cls, value: str, info: ValidationInfo) -> str:
        if value and checking(info, cls.group) and value[:5] == value[6:]:
            fail("ReminderSettings", (), "empty_window", "start and end are the same; send \"\" for no quiet hours", value)
        return value


class FirstContactSettings(RequestModel):
    """A lead assigned and not followed up in time: remind the owner, then the manager, then pool it."""

    remind_after_h: float = Field(4, ge=0, le=1000, description="Business hours after assignment; 0 = off")
    manager_after_h: float = Field(8, ge=0, le=1000, description="0 = never")
    pool_after_h: float = Field(24, ge=0, le=1000, description="0 = never")
    group: ClassVar[str] = "first_contact"

    @model_validator(mode="after")
    def _steps_in_order(self, info: ValidationInfo) -> FirstContactSettings:
        if not checking(info, self.group):
            return self
        steps = [(name, getattr(self, name)) for name in ("remind_after_h", "manager_after_h", "pool_after_h") if getattr(self, name)]
        for (before, earlier), (name, value) in zip(steps, steps[1:]):
            if value <= earlier:
                fail("FirstContactSettings", (name,), "step_after", "must be after {before} ({hours} h)", value, before=f"first_contact.{before}", hours=earlier)
        return self


class RfmSettings(RequestModel):
    window_days: int = Field(365, ge=30, le=3650, description="Frequency and monetary count payments received in this window")
    recency_days: list[Annotated[int, Field(ge=1, le=3650)]] = Field(default_factory=lambda: [30, 180], min_length=2, max_length=2)
    frequency: list[Annotated[int, Field(ge=1, le=100000)]] = Field(default_factory=lambda: [3, 1], min_length=2, max_length=2)
    monetary_fen: list[Annotated[int, Field(ge=1, le=10**15)]] = Field(default_factory=lambda: [10_000_000, 1_000_000], min_length=2, max_length=2)
    layer_scores: dict[Literal["A", "B"], Annotated[int, Field(ge=3, le=9)]] = Field(default_factory=lambda: cast(dict[Literal["A", "B"], int], {"A": 8, "B": 5}))
    drives_churn: bool = Field(False, description="Churn days by layer (churn.days_by_layer) rather than by level")
    drives_reclaim: bool = Field(False, description="Reclaim days by layer rather than by level")
    drives_allocation: bool = Field(False, description="Allocation rules' level match reads the layer")
    group: ClassVar[str] = "rfm"

    @field_validator("recency_days", "frequency", "monetary_fen")
    @classmethod
    def _thresholds_in_order(cls, value: list[int], info: ValidationInfo) -> list[int]:
        if checking(info, cls.group):
            ascending = info.field_name == "recency_days"  # fewer days is better; more contracts and money are
            if not _strictly(value, ascending=ascending):
                code, text = ("must_ascend_list", "must ascend (score 3 first)") if ascending else ("must_descend_list", "must descend (score 3 first)")
                fail("RfmSettings", (), code, text, value)
        return value

    @field_validator("layer_scores")
    @classmethod
    def _layers_in_order(cls, value: dict[str, int], info: ValidationInfo) -> dict[str, int]:
        if not checking(info, cls.group):
            return value
        missing = [k for k in ("A", "B") if k not in value]
        if missing:
            fail("RfmSettings", (), "layers_required", "give the scores of A and B (missing {missing})", value, missing=", ".join(missing))
        if value["A"] <= value["B"]:
            fail("RfmSettings", ("A",), "must_exceed", "must be above {other} ({score})", value["A"], other="rfm.layer_scores.B", score=value["B"])
        return value


class Reason(RequestModel):
    code: str = Field(min_length=1, max_length=32, pattern=r"^[a-z0-9_]+$")
    label: SingleLine = Field(min_length=1, max_length=64)
    label_en: SingleLine | None = Field(None, max_length=64)


def _default_lost() -> list[Reason]:
    return [Reason(code="price", label="价格太高", label_en="Price too high"), Reason(code="competitor", label="选择了竞争对手", label_en="Chose a competitor"),
            Reason(code="no_need", label="没有需求", label_en="No need"), Reason(code="unreachable", label="联系不上", label_en="Unreachable"),
            Reason(code="other", label="其他", label_en="Other")]


def _default_churn() -> list[Reason]:
    return [Reason(code="price", label="价格", label_en="Price"), Reason(code="service", label="服务不满意", label_en="Unhappy with service"),
            Reason(code="competitor", label="转向竞争对手", label_en="Moved to a competitor"), Reason(code="closed", label="业务关闭", label_en="Business closed"),
            Reason(code="other", label="其他", label_en="Other")]


class ReasonSettings(RequestModel):
    """The catalogues a rep picks from when a lead is lost or a customer churns; ``other`` takes a note."""

    lost: list[Reason] = Field(default_factory=_default_lost, min_length=1, max_length=50)
    churn: list[Reason] = Field(default_factory=_default_churn, min_length=1, max_length=50)

    @model_validator(mode="after")
    def _codes(self) -> ReasonSettings:
        for name in ("lost", "churn"):
            codes = [r.code for r in getattr(self, name)]
            if len(set(codes)) != len(codes):
                raise ValueError(f"{name}: each code once")
            if "other" not in codes:
                raise ValueError(f"{name}: the catalogue keeps 'other'")
        return self


class SlaTarget(RequestModel):
    first_response_h: float = Field(gt=0, le=1000, description="Business hours to the first staff reply")
    resolution_h: float = Field(gt=0, le=5000, description="Business hours to resolved")


def _default_sla() -> dict[Priority, SlaTarget]:
    return {"urgent": SlaTarget(first_response_h=1, resolution_h=8), "high": SlaTarget(first_response_h=2, resolution_h=16),
            "normal": SlaTarget(first_response_h=4, resolution_h=40), "low": SlaTarget(first_response_h=8, resolution_h=80)}


class ServiceSettings(RequestModel):
    """After-sale service (售后): ticket SLAs, surveys and return visits."""

    sla: dict[Priority, SlaTarget] = Field(default_factory=_default_sla)
    due_soon_min: int = Field(30, ge=0, le=1440, description="Remind the handler this long before an SLA is breached; 0 = off")
    reopen_days: int = Field(7, ge=0, le=365, description="A customer may reopen a resolved ticket within this many days")
    survey_after_contract: bool = True
    survey_after_contract_days: int = Field(30, ge=0, le=365)
    return_visit_after_days: int = Field(7, ge=0, le=365, description="Return visit (回访) task this many days after a contract starts; 0 = off")
    return_visit_before_renewal_days: int = Field(45, ge=0, le=365, description="And this many days before it ends; 0 = off")

    @field_validator("sla")
    @classmethod
    def _all_priorities(cls, value: dict[str, SlaTarget]) -> dict[str, SlaTarget]:
        missing = {"low", "normal", "high", "urgent"} - set(value)
        if missing:
            raise ValueError(f"an SLA for every priority (missing {', '.join(sorted(missing))})")
        return value


class HandoverSettings(RequestModel):
    on_deactivate: Literal["ask", "pool"] = Field("ask", description="Deactivating a user with open work: ask for a hand-over, or send their leads to the pool")


GROUPS = ("business_hours", "approval", "churn", "reminders", "first_contact", "rfm", "reasons", "service", "handover")


class TeamSettings(RequestModel):
    business_hours: BusinessHours = Field(default_factory=BusinessHours)
    approval: ApprovalSettings
    churn: ChurnSettings = Field(default_factory=ChurnSettings)
    reminders: ReminderSettings = Field(default_factory=ReminderSettings)
    first_contact: FirstContactSettings = Field(default_factory=FirstContactSettings)
    rfm: RfmSettings = Field(default_factory=RfmSettings)
    reasons: ReasonSettings = Field(default_factory=ReasonSettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    handover: HandoverSettings = Field(default_factory=HandoverSettings)


def default_team_settings(settings: Settings) -> dict:
    """The defaults for a team that stored nothing, as plain data: the environment's values where
    it has them (they were global before settings moved to teams)."""
    s = settings
    return {
        "business_hours": BusinessHours().model_dump(mode="json"),
        "approval": {"tiers": [t.model_dump() for t in s.approval_thresholds]},
        "churn": {"days": s.churn_days, "days_by_level": dict(s.churn_days_by_level), "days_by_layer": {}, "warning_days": list(s.churn_warning_days)},
        "reminders": {"renewal_days": list(s.renewal_reminder_days), "renewal_manager_days": s.renewal_manager_days,
                      "payment_days_before": s.payment_reminder_days_before, "payment_overdue_days": list(s.payment_overdue_days),
                      "quiet_hours": s.quiet_hours},
        "first_contact": FirstContactSettings().model_dump(),
        "rfm": {**RfmSettings().model_dump(), "recency_days": list(s.rfm_recency_days), "frequency": list(s.rfm_frequency),
                "monetary_fen": list(s.rfm_monetary_fen), "layer_scores": dict(s.rfm_layer_scores)},
        "reasons": ReasonSettings().model_dump(),
        "service": ServiceSettings().model_dump(),
        "handover": HandoverSettings().model_dump(),
    }


def effective_team_settings(settings: Settings, stored: dict | None) -> TeamSettings:
    """Defaults, then each group's stored fields over them (a group stored in part keeps the
    defaults of the fields it does not name)."""
    data = default_team_settings(settings)
    for group, values in (stored or {}).items():
        if group in data and isinstance(values, dict):
            data[group] = {**data[group], **values}
    return TeamSettings.model_validate(data, strict=False)


# ---------------------------------------------------------------- PATCH /teams/{id}/settings
class _GroupPatch(RequestModel):
    """A group in a PATCH: any subset of its fields (a field left out keeps its value). ``null``
    is refused inside a group; the whole group set to ``null`` goes back to its defaults."""

    nullable: ClassVar[frozenset[str]] = frozenset()
    model_config = {"json_schema_extra": _drop_null_from_schema}

    @model_validator(mode="after")
    def _refuse_null(self) -> _GroupPatch:
        nulls = sorted(k for k in self.model_fields_set if getattr(self, k) is None)
        if nulls:
            raise ValidationError.from_exception_data(type(self).__name__, [
                InitErrorDetails(type=PydanticCustomError("null_not_allowed", "may not be null; leave the field out to keep it"), loc=(k,), input=None)
                for k in nulls
            ])
        return self


def _partial(model: type[RequestModel]) -> type[_GroupPatch]:
    """``model`` with every field optional and no defaults: the fields a PATCH names. Types and
    bounds are the group's own; the rules across fields run on the merged result."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        fields[name] = (annotation | None, Field(None, description=info.description))
    return create_model(f"{model.__name__}Patch", __base__=_GroupPatch, __doc__=f"Any of the fields of {model.__name__}.", **fields)


class _SettingsPatchBase(PatchModel):
    """Any subset of the groups; inside a group any subset of its fields. A group set to ``null``
    goes back to its defaults (the environment's values, where it has them)."""

    nullable = frozenset(TeamSettings.model_fields)

    def changes(self) -> dict[str, dict | None]:
        """{group: {field: JSON value} for the fields sent, or None to reset the group}."""
        out: dict[str, dict | None] = {}
        for group in sorted(self.model_fields_set - {"version"}):
            value = getattr(self, group)
            if value is None:
                out[group] = None
            else:
                dumped = value.model_dump(mode="json")
                out[group] = {name: dumped[name] for name in sorted(value.model_fields_set)}
        return out


_GROUP_PATCHES: dict[str, Any] = {group: (_partial(cast(type[RequestModel], info.annotation)) | None, Field(None)) for group, info in TeamSettings.model_fields.items()}
TeamSettingsPatch = create_model("TeamSettingsPatch", __base__=_SettingsPatchBase, __doc__=_SettingsPatchBase.__doc__, **_GROUP_PATCHES)


def stored_groups(stored: Any) -> dict[str, dict]:
    """What a team document holds under ``settings``: {group: {field: value}} of the known groups."""
    if not isinstance(stored, dict):
        return {}
    return {g: dict(v) for g, v in stored.items() if g in TeamSettings.model_fields and isinstance(v, dict)}


def apply_settings_patch(settings: Settings, stored: Any, changes: dict[str, dict | None]) -> tuple[dict[str, dict], TeamSettings]:
    """The team's stored groups after ``changes`` and the effective settings they make, validated
    whole — with the order checks of every group the change sets — before anything is written.
    Raises ``ValidationError`` with the field's path (``churn.warning_days.0``)."""
    after = stored_groups(stored)
    for group, fields in changes.items():
        if fields is None:
            after.pop(group, None)
        else:
            after[group] = {**after.get(group, {}), **fields}
    data = default_team_settings(settings)
    for group, values in after.items():
        data[group] = {**data[group], **values}
    checked = frozenset(g for g, fields in changes.items() if fields is not None)
    return after, TeamSettings.model_validate(data, strict=False, context={CHECK: checked})


class TeamSettingsOut(OutModel):
    team_id: str
    version: int = Field(description="The team's version: send it back (or If-Match) to change the settings")
    customized: list[str] = Field(description="Groups the team stored (in part or whole); the others are all defaults")
    customized_fields: dict[str, list[str]] = Field(description="For each customized group, the fields it stores; the rest of the group is the default")
    settings: TeamSettings = Field(description="The effective settings: defaults with what the team stored over them")
    updated_at: IsoDatetime | None = None


class TeamSettingsBook:
    """Every team's effective settings, read once by a job that handles many teams
    (``UserService.settings_book``): ``of(team_id)`` for a team (a team that stored nothing, no
    team, or an unknown one: the defaults), ``all()`` to bound a query by the widest setting."""

    def __init__(self, default: TeamSettings, teams: dict[str, TeamSettings]) -> None:
        self.default = default
        self.teams = teams

    def of(self, team_id: Any) -> TeamSettings:
        return self.teams.get(str(team_id), self.default) if team_id else self.default

    def all(self) -> list[TeamSettings]:
        return [self.default, *self.teams.values()]
