from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from server.schemas.common import IsoDatetime, MultiLine, OutModel, PageQuery, PatchModel, RequestModel, SingleLine, check_single_line

StaffRole = Literal["rep", "manager", "admin"]
Role = Literal["customer", "rep", "manager", "admin"]
Tag = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[^$.]+$"), AfterValidator(check_single_line)]
Username = Field(min_length=3, max_length=32, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
OBJECT_ID_PATTERN = r"^[0-9a-f]{24}$"


class UserCreate(RequestModel):
    username: str = Username
    password: str | None = Field(None, min_length=8, max_length=128)
    name: SingleLine = Field(min_length=1, max_length=64)
    role: StaffRole
    team_id: str | None = Field(None, pattern=OBJECT_ID_PATTERN)
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    capacity: int = Field(200, ge=0, le=100000, description="Most open leads this rep may own")
    finance: bool = Field(False, description="May record payments")
    service: bool = Field(False, description="Service staff (售后): a rep or manager who handles their team's tickets")
    active: bool = True


class UserUpdate(PatchModel):
    """Only ``team_id`` may be cleared (null), and only where the role allows it (an admin)."""

    nullable = frozenset({"team_id"})
    name: SingleLine | None = Field(None, min_length=1, max_length=64)
    password: str | None = Field(None, min_length=8, max_length=128)
    role: StaffRole | None = None
    team_id: str | None = Field(None, pattern=OBJECT_ID_PATTERN)
    tags: list[Tag] | None = Field(None, max_length=32)
    capacity: int | None = Field(None, ge=0, le=100000)
    finance: bool | None = None
    service: bool | None = None
    active: bool | None = None


class UserOut(OutModel):
    id: str
    username: str | None = None
    name: str
    role: Role
    team_id: str | None = None
    tags: list[str] = []
    capacity: int | None = None
    finance: bool = False
    service: bool = False
    active: bool
    open_leads: int = 0
    wechat_bound: bool = False
    version: int
    created_at: IsoDatetime
    updated_at: IsoDatetime


class UserListQuery(PageQuery):
    team_id: str | None = Field(None, pattern=OBJECT_ID_PATTERN)
    role: Role | None = None
    active: bool | None = None


class BindCodeOut(OutModel):
    code: str
    expires_at: IsoDatetime


class PoolSettings(RequestModel):
    """The team's public-pool rules (公海规则)."""

    claim_daily_limit: int = Field(20, ge=0, le=1000, description="Leads a rep may claim per day")
    release_cooldown_days: int = Field(7, ge=0, le=365, description="Days before a rep may re-claim a lead they released")


class ReclaimSettings(RequestModel):
    """When untouched leads go back to the team's pool (回收规则)."""

    enabled: bool = True
    no_followup_days: int = Field(7, ge=1, le=365, description="Days without a follow-up since assignment or last activity")
    no_followup_days_by_level: dict[Literal["A", "B", "C"], Annotated[int, Field(ge=1, le=365)]] = Field(default_factory=dict, description="Per customer level, e.g. {\"A\": 30}")
    no_conversion_days: int | None = Field(30, ge=1, le=365, description="Days after a claim without becoming a customer")
    warn_days_before: int = Field(2, ge=0, le=30, description="Warn the owner this many days before")

    @model_validator(mode="after")
    def _levels(self) -> ReclaimSettings:
        if any(d < 1 or d > 365 for d in self.no_followup_days_by_level.values()):
            raise ValueError("days are 1..365")
        return self


class TeamCreate(RequestModel):
    name: SingleLine = Field(min_length=1, max_length=64)
    description: MultiLine | None = Field(None, max_length=500)
    active: bool = True
    pool: PoolSettings = Field(default_factory=PoolSettings)
    reclaim: ReclaimSettings = Field(default_factory=ReclaimSettings)


class TeamUpdate(PatchModel):
    nullable = frozenset({"description"})
    name: SingleLine | None = Field(None, min_length=1, max_length=64)
    description: MultiLine | None = Field(None, max_length=500)
    active: bool | None = None
    pool: PoolSettings | None = None
    reclaim: ReclaimSettings | None = None


class PoolSettingsOut(OutModel):
    claim_daily_limit: int = 20
    release_cooldown_days: int = 7


class ReclaimSettingsOut(OutModel):
    enabled: bool = True
    no_followup_days: int = 7
    no_followup_days_by_level: dict[str, int] = {}
    no_conversion_days: int | None = 30
    warn_days_before: int = 2


class TeamOut(OutModel):
    id: str
    name: str
    description: str | None = None
    active: bool
    pool: PoolSettingsOut = PoolSettingsOut()
    reclaim: ReclaimSettingsOut = ReclaimSettingsOut()
    version: int
    created_at: IsoDatetime
    updated_at: IsoDatetime
