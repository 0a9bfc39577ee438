"""Document ids: ObjectIds in the database, 24-hex strings in the API."""

from __future__ import annotations

from bson import ObjectId
from bson.errors import InvalidId

from server.errors import NotFound


def parse_oid(value: str | None, not_found_code: str) -> ObjectId:
    """A malformed id cannot name an existing document, so it gets the same 404 as a missing one."""
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        raise NotFound(not_found_code) from None


def maybe_oid(value: str | None) -> ObjectId | None:
    try:
        return ObjectId(value) if value else None
    except (InvalidId, TypeError):
        return None
