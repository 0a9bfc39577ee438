"""Base models. Requests forbid unknown fields and are strict about types; responses go through
``*Out`` models only, so nothing internal (ciphertexts, hashes, session keys) can leak."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from server.paging import DEFAULT_LIMIT, MAX_LIMIT


class RequestModel(BaseModel):
    """A JSON request body: unknown fields and type coercion are errors (strict mode; JSON input
    still parses ISO-8601 strings into datetimes)."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)


class QueryModel(BaseModel):
    """Query-string parameters arrive as text, so these convert types (lax) but forbid unknown keys."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PageQuery(QueryModel):
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(None, max_length=512)


# Datetimes leave the API as ISO 8601 with an explicit UTC offset.
# A naive value is UTC read back from the embedded database (see server.clock.as_utc): say so.
IsoDatetime = Annotated[
    datetime, PlainSerializer(lambda d: (d if d.tzinfo else d.replace(tzinfo=timezone.utc)).isoformat(), return_type=str)
]


class OutModel(BaseModel):
    model_config = ConfigDict(extra="ignore", from_attributes=True)


T = TypeVar("T")


class Page(OutModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class ErrorDetail(OutModel):
    field: str | None = None
    code: str
    message: str


class ErrorBody(OutModel):
    code: str
    message: str
    details: list[ErrorDetail] = []


class ErrorEnvelope(OutModel):
    error: ErrorBody


class Versioned(RequestModel):
    version: int | None = Field(None, ge=1, description="The version you last read; or send If-Match")
