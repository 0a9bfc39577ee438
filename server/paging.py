"""Cursor pagination on an indexed sort key with ``_id`` as the tie-breaker; never ``skip``.

The cursor's condition is ANDed with the caller's filter (``and_filter``), so a forged cursor can
only narrow a page, never widen the caller's scope.

The cursor is opaque to clients: urlsafe base64 of ``[sort_value, id]``. Values are typed so a
datetime key round-trips as a datetime.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection

from server.errors import ApiError

MAX_LIMIT = 100
DEFAULT_LIMIT = 20


def _enc(value: Any) -> Any:
    if isinstance(value, ObjectId):
        return {"o": str(value)}
    if isinstance(value, datetime):
        return {"d": value.isoformat()}
    return {"v": value}


def _dec(value: Any) -> Any:
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError("bad cursor part")
    (kind, raw), = value.items()
    if kind == "o":
        return ObjectId(raw)
    if kind == "d":
        parsed = datetime.fromisoformat(raw)
        if parsed.tzinfo is None:
            raise ValueError("naive datetime")
        return parsed
    if kind == "v" and (raw is None or isinstance(raw, (str, int, float, bool))):
        return raw
    raise ValueError("bad cursor part")


def encode_cursor(parts: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps([_enc(p) for p in parts]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, n_parts: int) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw)
        if not isinstance(parts, list) or len(parts) != n_parts:
            raise ValueError("wrong length")
        return [_dec(p) for p in parts]
    except (ValueError, TypeError, UnicodeDecodeError, json.JSONDecodeError):
        raise ApiError("request.bad_cursor", 400) from None


def null_safe(filter_: dict) -> dict:
    """The same filter with every ``{field: None}`` written ``{field: {"$eq": None}}`` (through
    ``$and``/``$or``/``$nor`` too). Both mean "null or missing" on MongoDB; nx-27017 matches the
    short form next to a range (the cursor's) or inside ``$and``/``$or`` only where the field is
    missing, so ``?unread=true`` lost every page after the first (docs/mongodb-compat.md)."""
    out: dict = {}
    for key, value in filter_.items():
        if key in ("$and", "$or", "$nor") and isinstance(value, list):
            out[key] = [null_safe(part) if isinstance(part, dict) else part for part in value]
        elif value is None and not key.startswith("$"):
            out[key] = {"$eq": None}
        else:
            out[key] = value
    return out


def and_filter(filter_: dict, condition: dict) -> dict:
    """``filter_`` AND ``condition``, never replacing a key of the caller's filter.

    Merged as a plain dict, a cursor's ``_id`` or ``$or`` would overwrite the scope's own ``_id``
    (a manager's one team) or a search's ``$or``, and a forged cursor would list everything. So the
    caller's keys stay where they are; the condition's operators (its ``$or``) and any key the
    filter already has go under ``$and``; its other keys join the filter. Standard MongoDB, and the
    forms nx-27017 gets right: a top-level ``$or`` with a datetime range drops the other top-level
    conditions there, and ``{f: null}`` inside ``$and`` or beside a range matches only a missing
    ``f`` (hence ``null_safe``; docs/mongodb-compat.md).
    """
    query = null_safe(filter_)
    nested = {k: v for k, v in condition.items() if k in query or k.startswith("$")}
    query.update({k: v for k, v in condition.items() if k not in nested})
    if nested:
        query["$and"] = [*query.get("$and", []), nested]
    return query


@dataclass
class Page:
    items: list[dict]
    next_cursor: str | None


async def paginate(
    collection: AsyncCollection,
    filter_: dict,
    *,
    limit: int,
    cursor: str | None,
    sort_key: str = "_id",
    descending: bool = True,
    projection: dict | None = None,
) -> Page:
    """One ``find`` per page: fetch ``limit + 1`` to learn whether there is a next page."""
    op = "$lt" if descending else "$gt"
    direction = -1 if descending else 1
    query = null_safe(filter_)
    if cursor:
        if sort_key == "_id":
            (last_id,) = decode_cursor(cursor, 1)
            after: dict = {"_id": {op: last_id}}
        else:
            last_value, last_id = decode_cursor(cursor, 2)
            # Past the last item: a later sort value, or the same one (written as a closed range so
            # the (…, sort_key) index serves both branches) and a later _id.
            after = {"$or": [{sort_key: {op: last_value}}, {sort_key: {"$gte": last_value, "$lte": last_value}, "_id": {op: last_id}}]}
        query = and_filter(filter_, after)
    sort = [("_id", direction)] if sort_key == "_id" else [(sort_key, direction), ("_id", direction)]
    docs = await collection.find(query, projection).sort(sort).limit(limit + 1).to_list(None)
    next_cursor = None
    if len(docs) > limit:
        docs = docs[:limit]
        last = docs[-1]
        next_cursor = encode_cursor([last["_id"]] if sort_key == "_id" else [last.get(sort_key), last["_id"]])
    return Page(items=docs, next_cursor=next_cursor)
