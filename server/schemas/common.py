"""Base models. Requests forbid unknown fields and are strict about types; responses go through
``*Out`` models only, so nothing internal (ciphertexts, hashes, session keys) can leak."""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Annotated, Any, ClassVar, Generic, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationError, ValidationInfo, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from server.i18n import pick, pick_all
from server.paging import DEFAULT_LIMIT, MAX_LIMIT


class RequestModel(BaseModel):
    """A JSON request body: unknown fields and type coercion are errors (strict mode; JSON input
    still parses ISO-8601 strings into datetimes)."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True, allow_inf_nan=False)


class QueryModel(BaseModel):
    """Query-string parameters arrive as text, so these convert types (lax) but forbid unknown keys."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, allow_inf_nan=False)


class PageQuery(QueryModel):
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(None, max_length=512)


# Datetimes leave the API as ISO 8601 with an explicit UTC offset.
# A naive value is UTC read back from the embedded database (see server.clock.as_utc): say so.
IsoDatetime = Annotated[
    datetime, PlainSerializer(lambda d: (d if d.tzinfo else d.replace(tzinfo=timezone.utc)).isoformat(), return_type=str)
]



def context_language(info: ValidationInfo) -> str | None:
    """The caller's language, passed by ``ApiHandler.write_model`` as validation context."""
    return (info.context or {}).get("language") if isinstance(info.context, dict) else None


# A text stored in both languages ({"zh-CN": ..., "en": ...}, see server/i18n.py) leaves the API in
# the caller's language; a plain string (typed by a person) as it is.
LocalizedStr = Annotated[str, BeforeValidator(lambda v, info: pick(v, context_language(info)))]
# The same for every such text inside a free-form dict (timeline event data).
LocalizedData = Annotated[dict, BeforeValidator(lambda v, info: pick_all(v, context_language(info)))]


class OutModel(BaseModel):
    model_config = ConfigDict(extra="ignore", from_attributes=True)


T = TypeVar("T")


class Page(OutModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class ErrorDetail(OutModel):
    field: str | None = None
    code: str
    message: str  # in the caller's language, for a person
    # Data a client acts on (the allowed stages, the existing lead's id), the same in every language;
    # present only on the details that carry data. Read it instead of parsing ``message``.
    value: str | None = None


class ErrorBody(OutModel):
    code: str
    message: str
    details: list[ErrorDetail] = []


class ErrorEnvelope(OutModel):
    error: ErrorBody


# ---------------------------------------------------------------- bounded input types
# Every request model builds on these, so odd input is a 422 in the envelope, never a 500 later
# (a BSON overflow, a datetime overflow in arithmetic, an XLSX export that refuses a character).

# Control characters (Unicode Cc: C0, DEL, C1) and lone surrogates are never text; single-line
# fields also refuse tab, newline and the Unicode line/paragraph separators; multi-line ones keep tab,
# LF and CR (MultiLine turns CR LF into LF). Neither takes the bidirectional embeddings, overrides
# and isolates (U+202A–U+202E, U+2066–U+2069, U+061C), which make a name display as another one
# ("Trojan Source"); the zero-width joiners of emoji sequences are text.
_BIDI = "\u061c\u202a-\u202e\u2066-\u2069"
_MULTI_LINE_BAD = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff{_BIDI}]")
_SINGLE_LINE_BAD = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff{_BIDI}]")


def text_problem(value: str, *, multiline: bool = False) -> str | None:
    """Why ``value`` is not acceptable text (a detail code), or None. Also for free-form answers."""
    if (_MULTI_LINE_BAD if multiline else _SINGLE_LINE_BAD).search(value):
        return "control_character"
    return None


def _single_line(value: str) -> str:
    if text_problem(value):
        raise PydanticCustomError("control_character", "control characters and line breaks are not allowed here")
    return value


def _multi_line(value: str) -> str:
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    if text_problem(value, multiline=True):
        raise PydanticCustomError("control_character", "control characters are not allowed (tab and newline are)")
    return value


SingleLine = Annotated[str, AfterValidator(_single_line)]
"""Text on one line: names, titles, tags, labels. Refuses every control character."""
# Constraints written after SingleLine (``Annotated[SingleLine, Field(pattern=…)]`` or
# ``SingleLine | None = Field(pattern=…)``) are enforced but pydantic leaves ``pattern`` out of the
# JSON schema; put them first instead: ``Annotated[str, Field(pattern=…), AfterValidator(check_single_line)]``.
check_single_line = _single_line


MultiLine = Annotated[str, AfterValidator(_multi_line)]
"""Notes, comments, descriptions: keeps tab and newline (CR LF becomes LF), refuses the rest."""

# Business dates and times live in this century; anything else is a typo or a probe, and years 1
# or 9999 overflow as soon as a time zone or a duration is applied.
YEAR_MIN, YEAR_MAX = 2000, 2100
DATE_MIN, DATE_MAX = date(YEAR_MIN, 1, 1), date(YEAR_MAX, 12, 31)


def _sane_datetime(value: datetime) -> datetime:
    if not YEAR_MIN <= value.year <= YEAR_MAX:
        raise PydanticCustomError("datetime_range", "must be between {min} and {max}", {"min": f"{YEAR_MIN}-01-01", "max": f"{YEAR_MAX}-12-31"})
    return value


def _sane_date(value: date) -> date:
    if not DATE_MIN <= value <= DATE_MAX:
        raise PydanticCustomError("date_range", "must be between {min} and {max}", {"min": DATE_MIN.isoformat(), "max": DATE_MAX.isoformat()})
    return value


SaneDatetime = Annotated[AwareDatetime, AfterValidator(_sane_datetime)]
"""An ISO 8601 datetime with a UTC offset (a naive one is refused: whose 9:00?), years 2000–2100."""
SaneDate = Annotated[date, AfterValidator(_sane_date)]
"""A calendar day (YYYY-MM-DD), 2000-01-01 to 2100-12-31."""

INT64_MAX = 2**63 - 1
VERSION_MAX = 2**31 - 1  # the same bound as an If-Match header
Int64 = Annotated[int, Field(ge=-INT64_MAX - 1, le=INT64_MAX)]
"""Any integer that fits MongoDB's 64-bit integers; give tighter bounds where the domain has them."""


class Versioned(RequestModel):
    version: int | None = Field(None, ge=1, le=VERSION_MAX, description="The version you last read; or send If-Match")


def _drop_null_from_schema(schema: dict[str, Any], model: type[PatchModel]) -> None:
    """In OpenAPI, a field that refuses null is not shown as nullable."""
    for name, prop in (schema.get("properties") or {}).items():
        if name in model.nullable or name == "version" or "anyOf" not in prop:
            continue
        options = [o for o in prop["anyOf"] if o != {"type": "null"}]
        if len(options) == 1:
            prop.pop("anyOf")
            prop.update(options[0])
        else:
            prop["anyOf"] = options


class PatchModel(Versioned):
    """A PATCH body: a field left out stays as it is; ``null`` clears a field only where the model
    lists it in ``nullable`` (optional data such as notes). Anything else that is null — a name, a
    role, tags, a due time — is a 422 before any write, so nothing is half-applied."""

    nullable: ClassVar[frozenset[str]] = frozenset()
    model_config = ConfigDict(json_schema_extra=_drop_null_from_schema)

    @model_validator(mode="after")
    def _refuse_null(self) -> PatchModel:
        # After validation, not a "before" field validator: that would hand strict fields a Python
        # str instead of JSON input and refuse every datetime.
        nulls = sorted(k for k in self.model_fields_set if getattr(self, k) is None and k != "version" and k not in self.nullable)
        if nulls:
            raise ValidationError.from_exception_data(type(self).__name__, [
                InitErrorDetails(type=PydanticCustomError("null_not_allowed", "may not be null; leave the field out to keep it"), loc=(k,), input=None)
                for k in nulls
            ])
        return self
