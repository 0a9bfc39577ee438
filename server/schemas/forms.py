from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from server.schemas.common import IsoDatetime, MultiLine, OutModel, PatchModel, QueryModel, RequestModel, SingleLine, check_single_line
from server.schemas.users import OBJECT_ID_PATTERN, Tag

FieldType = Literal["text", "phone", "email", "number", "select", "multiselect", "date", "textarea"]
MapsTo = Literal["name", "company", "email", "city", "notes"]
FieldKey = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
# A channel or campaign name: one line, no operator characters.
Label = Annotated[str, Field(max_length=64, pattern=r"^[^$.]+$"), AfterValidator(check_single_line)]
DEFAULT_MAX_LENGTH = {"text": 200, "textarea": 2000, "email": 254}


class OptionIn(RequestModel):
    value: SingleLine = Field(min_length=1, max_length=64, pattern=r"^[^$.]+$")
    label: SingleLine = Field(min_length=1, max_length=64)
    tag: Tag | None = Field(None, description="Choosing this option adds this tag to the lead")


class FormFieldIn(RequestModel):
    key: FieldKey
    label: SingleLine = Field(min_length=1, max_length=64)
    type: FieldType
    required: bool = False
    options: list[OptionIn] | None = Field(None, max_length=100)
    min_length: int | None = Field(None, ge=0, le=2000)
    max_length: int | None = Field(None, ge=1, le=2000)
    min: float | None = None
    max: float | None = None
    maps_to: MapsTo | None = Field(None, description="Copy this answer to the lead's field")

    @model_validator(mode="after")
    def _consistent(self) -> FormFieldIn:
        choice = self.type in ("select", "multiselect")
        if choice and not self.options:
            raise ValueError(f"field {self.key}: {self.type} needs options")
        if not choice and self.options:
            raise ValueError(f"field {self.key}: only select and multiselect take options")
        if self.options and len({o.value for o in self.options}) != len(self.options):
            raise ValueError(f"field {self.key}: option values must be unique")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"field {self.key}: min is above max")
        if self.min_length is not None and self.max_length is not None and self.min_length > self.max_length:
            raise ValueError(f"field {self.key}: min_length is above max_length")
        return self


def _check_fields(fields: list[FormFieldIn]) -> None:
    keys = [f.key for f in fields]
    if len(set(keys)) != len(keys):
        raise ValueError("field keys must be unique")
    if sum(1 for f in fields if f.type == "phone") > 1:
        raise ValueError("a form has at most one phone field")
    mapped = [f.maps_to for f in fields if f.maps_to]
    if len(set(mapped)) != len(mapped):
        raise ValueError("each lead field may be mapped once")


class FormCreate(RequestModel):
    slug: str = Field(min_length=2, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: SingleLine = Field(min_length=1, max_length=100)
    description: MultiLine | None = Field(None, max_length=2000)
    fields: list[FormFieldIn] = Field(min_length=1, max_length=50)
    default_tags: list[Tag] = Field(default_factory=list, max_length=20)
    team_id: str = Field(pattern=OBJECT_ID_PATTERN)
    active: bool = True

    @model_validator(mode="after")
    def _fields(self) -> FormCreate:
        _check_fields(self.fields)
        return self


class FormUpdate(PatchModel):
    """Only the description may be cleared; a null title, fields or team would break the form."""

    nullable = frozenset({"description"})
    title: SingleLine | None = Field(None, min_length=1, max_length=100)
    description: MultiLine | None = Field(None, max_length=2000)
    fields: list[FormFieldIn] | None = Field(None, min_length=1, max_length=50)
    default_tags: list[Tag] | None = Field(None, max_length=20)
    team_id: str | None = Field(None, pattern=OBJECT_ID_PATTERN)
    active: bool | None = None

    @model_validator(mode="after")
    def _fields(self) -> FormUpdate:
        if self.fields is not None:
            _check_fields(self.fields)
        return self


class OptionOut(OutModel):
    value: str
    label: str


class FormFieldOut(OutModel):
    key: str
    label: str
    type: FieldType
    required: bool
    options: Sequence[OptionOut] | None = None  # a Sequence, so FormFieldAdminOut may say list[FormOptionOut]
    min_length: int | None = None
    max_length: int | None = None
    min: float | None = None
    max: float | None = None


class PublicFormOut(OutModel):
    slug: str
    title: str
    description: str | None = None
    version: int
    fields: list[FormFieldOut]


class FormOptionOut(OptionOut):
    tag: str | None = None


class FormFieldAdminOut(FormFieldOut):
    options: list[FormOptionOut] | None = None
    maps_to: str | None = None


class FormOut(OutModel):
    id: str
    slug: str
    title: str
    description: str | None = None
    fields: list[FormFieldAdminOut]
    default_tags: list[str]
    team_id: str
    active: bool
    version: int
    created_at: IsoDatetime
    updated_at: IsoDatetime


class SubmissionIn(RequestModel):
    answers: dict[str, Any] = Field(max_length=50)
    phone_code: SingleLine | None = Field(None, min_length=1, max_length=128, description="From the phone-number button")
    source_channel: Label | None = None
    campaign: Label | None = None
    referrer_id: str | None = Field(
        None, pattern=OBJECT_ID_PATTERN,
        description="The staff member who shared the form (share card or QR code); kept on the lead when they are active staff, else ignored")


class SubmissionOut(OutModel):
    """A receipt of the submission itself: the same shape whether the phone was new or known."""

    submission_id: str
    status: Literal["received"] = "received"
    submitted_at: IsoDatetime


class MySubmissionOut(OutModel):
    submission_id: str
    form_slug: str
    form_title: str | None = None
    submitted_at: IsoDatetime
    status: Literal["received", "in_progress", "closed"]


class MySubmissionsPage(OutModel):
    items: list[MySubmissionOut]
    next_cursor: str | None = None


class QrCodeQuery(QueryModel):
    """``GET /forms/{id}/qrcode``: whom the code credits and how big it is (WeChat's 280..1280 px)."""

    ref: str | None = Field(None, pattern=OBJECT_ID_PATTERN, description="The staff member credited as referrer (a rep: only themselves, the default)")
    width: int = Field(430, ge=280, le=1280, description="The code's width in pixels")
