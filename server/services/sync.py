"""Offline sync: a phone that was offline for a while catches up to exactly the server's view.

``page(actor, cursor, limit)`` answers what changed in the caller's scope since ``cursor``:

- ``leads``: leads in scope (``LeadService.scope``) whose ``updated_at`` ≥ the cursor time;
- ``followups``: follow-ups the caller wrote (``followup`` events in ``lead_events``) whose
  ``updated_at`` ≥ the cursor time;
- ``deleted``: ids of leads that left the caller's scope since then (the recent ``scope_exits``
  kept on the caller's own user document, written by release, reassignment and reclaim; the
  request reads that document anyway, so deletions cost no command);
- ``tasks``: tasks in the caller's scope (``TaskService.scope``) whose ``updated_at`` ≥ the cursor;
- ``cursor`` / ``has_more``: keep asking while ``has_more``; store the last cursor.

No cursor is a full snapshot (no deletions needed: the phone starts empty).

**The cursor** is opaque to clients: urlsafe base64 of a small JSON object holding the time the
sync round started *minus an overlap of a few seconds* (and, while a round is being paged, the last
``_id`` seen per collection). The overlap is there because ``updated_at`` is stamped by two clocks:
the application's (replacements, inserts) and the database server's (``$currentDate``); a write
stamped a moment before the round started, or by a clock a little behind, is still picked up next
time. So pages repeat a few items; clients upsert by id (keeping the higher ``version``), which makes
repeats harmless.

**Paging** walks each collection in ``_id`` order with the time bound fixed for the round: a page is
auth + leads + follow-ups + tasks, ≤ 4 commands. A document
changed while a round is being paged has ``updated_at`` ≥ the round's start, so if the walk already
passed its ``_id`` the next round brings it. (Sorting by ``updated_at`` would also work on MongoDB,
but nx-27017 fails a range-plus-sort on a field that mixes ``$currentDate`` and inserted dates;
``_id`` order with a range filter works on both; see docs/mongodb-compat.md.)

**Deletions come first.** All of a round's deletions are on its first page, and the client applies
``deleted`` before ``leads``. A lead that left the scope and came back therefore ends up present:
its re-entry bumped ``updated_at`` after the exit, so it is in this round's leads; on the first page
a lead found in scope is left out of ``deleted``.

A cursor is bound to the caller and their scope (role, team): after a role or team change, once it
is older than ``MAX_CURSOR_AGE``, or when more leads left the scope since then than the user
document keeps (``SCOPE_EXITS_KEPT``), it is refused with ``request.bad_cursor`` and the client
starts again with a full snapshot.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId

from server.actor import Actor
from server.clock import Clock
from server.errors import ApiError, Forbidden
from server.paging import and_filter
from server.services.leads import LIST_PROJECTION, LeadService
from server.services.users import SCOPE_EXITS_KEPT
from server.services.tasks import TaskService

OVERLAP = timedelta(seconds=5)
MAX_CURSOR_AGE = timedelta(days=80)
MAX_CURSOR_AHEAD = timedelta(days=1)
CURSOR_VERSION = 1
DONE = True  # a collection walked to the end in this round
COLLECTIONS = ("l", "f", "t")  # leads, follow-ups, tasks

# Follow-ups are ``followup`` events on the lead's timeline (server/services/followups.py).
FOLLOWUP_PROJECTION = {"lead_id": 1, "author_id": 1, "at": 1, "updated_at": 1, "data": 1}


@dataclass
class SyncPage:
    leads: list[dict]
    followups: list[dict]
    tasks: list[dict]
    deleted: list[str]
    cursor: str
    has_more: bool


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def _bad_cursor() -> ApiError:
    return ApiError("request.bad_cursor", 400)


def _enc_pos(pos: Any) -> Any:
    if pos is None or pos is DONE:
        return pos
    if isinstance(pos, ObjectId):
        return {"o": str(pos)}
    return {"s": str(pos)}


def _dec_pos(raw: Any) -> Any:
    if raw is None or raw is True:
        return raw
    if isinstance(raw, dict) and len(raw) == 1:
        (kind, value), = raw.items()
        if kind == "o" and isinstance(value, str):
            try:
                return ObjectId(value)
            except (InvalidId, TypeError):
                raise _bad_cursor() from None
        if kind == "s" and isinstance(value, str) and 0 < len(value) <= 64:
            return value
    raise _bad_cursor()


def _is_ms(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53


def scope_key(actor: Actor) -> str:
    """Who the cursor was issued to and what their scope was: a change means a full resync."""
    return hashlib.sha256(f"{actor.id}|{actor.role}|{actor.team_id or ''}".encode()).hexdigest()[:16]


class SyncService:
    def __init__(self, *, leads_view, lead_events_view, tasks_view, clock: Clock, overlap: timedelta = OVERLAP, max_cursor_age: timedelta = MAX_CURSOR_AGE) -> None:
        self._leads = leads_view  # read-only: sync reads what the owners wrote
        self._events = lead_events_view
        self._tasks = tasks_view
        self._clock = clock
        self._overlap = overlap
        self._max_age = max_cursor_age

    # ------------------------------------------------------------ cursor
    def encode_cursor(self, state: dict) -> str:
        data = {"v": CURSOR_VERSION, "k": state["k"], "s": state["s"]}
        if "r" in state:  # a round still being paged
            data["r"] = state["r"]
            for name in COLLECTIONS:
                data[name] = _enc_pos(state[name])
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def decode_cursor(self, cursor: str, actor: Actor, now: datetime) -> dict:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            data = json.loads(raw)
        except (ValueError, TypeError, UnicodeDecodeError, binascii.Error):
            raise _bad_cursor() from None
        if not isinstance(data, dict) or data.get("v") != CURSOR_VERSION or data.get("k") != scope_key(actor):
            raise _bad_cursor()
        since = data.get("s")
        paging = "r" in data
        if not (_is_ms(since) or (paging and since is None)):
            raise _bad_cursor()
        state: dict[str, Any] = {"k": data["k"], "s": since}
        if paging:
            if not _is_ms(data["r"]) or set(data) != {"v", "k", "s", "r", *COLLECTIONS}:
                raise _bad_cursor()
            state["r"] = data["r"]
            for name in COLLECTIONS:
                state[name] = _dec_pos(data[name])
        elif set(data) != {"v", "k", "s"}:
            raise _bad_cursor()
        oldest = since if since is not None else state["r"]
        if not (_ms(now - self._max_age) <= oldest <= _ms(now + MAX_CURSOR_AHEAD)):
            raise _bad_cursor()  # too old to trust the deletion log, or from the future: start again
        return state

    # ------------------------------------------------------------ one page
    async def page(self, actor: Actor, user: dict, cursor: str | None, limit: int) -> SyncPage:
        if not actor.is_staff:
            raise Forbidden("auth.forbidden")
        now = self._clock.now()
        state: dict[str, Any] = self.decode_cursor(cursor, actor, now) if cursor else {"k": scope_key(actor), "s": None}
        exits: list[str] = []
        if "r" not in state:  # a new round starts now (minus the overlap: see the module docstring)
            if state["s"] is not None:
                exits = self._exits_since(user, state["s"])
            state.update({"r": _ms(now - self._overlap), "l": None, "f": None, "t": None})
        since = _dt(state["s"]) if state["s"] is not None else None
        (leads, state["l"]), (followups, state["f"]), (tasks, state["t"]) = await asyncio.gather(
            self._walk(self._leads, LeadService.scope(actor), "updated_at", since, state["l"], limit, LIST_PROJECTION),
            self._walk(self._events, {"author_id": actor.id, "kind": "followup"}, "updated_at", since, state["f"], limit, FOLLOWUP_PROJECTION),
            self._walk(self._tasks, TaskService.scope(actor), "updated_at", since, state["t"], limit, None),
        )
        present = {d["_id"] for d in leads}
        deleted = [lead_id for lead_id in dict.fromkeys(exits) if lead_id not in present]

        has_more = any(state[name] is not DONE for name in COLLECTIONS)
        next_cursor = self.encode_cursor(state if has_more else {"k": state["k"], "s": state["r"]})
        return SyncPage(leads=leads, followups=followups, tasks=tasks, deleted=deleted, cursor=next_cursor, has_more=has_more)

    @staticmethod
    def _exits_since(user: dict, since_ms: int) -> list[str]:
        entries = [e.split(":", 1) for e in user.get("scope_exits") or [] if isinstance(e, str) and ":" in e]
        if len(entries) >= SCOPE_EXITS_KEPT and int(entries[0][0]) > since_ms:
            raise _bad_cursor()  # older exits were dropped: only a snapshot is exact now
        return [lead_id for stamp, lead_id in entries if int(stamp) >= since_ms]

    @staticmethod
    async def _walk(collection, filter_: dict, stamp: str, since: datetime | None, after: Any, limit: int, projection: dict | None) -> tuple[list[dict], Any]:
        """The next ``limit`` documents changed since ``since``, in ``_id`` order after ``after``;
        returns them and the new position (the last ``_id``, or DONE at the end)."""
        if after is DONE:
            return [], DONE
        bounds: dict[str, Any] = {}
        if since is not None:
            bounds[stamp] = {"$gte": since}
        if after is not None:
            bounds["_id"] = {"$gt": after}
        # ANDed with the scope: a cursor can never replace a key of the scope.
        query = and_filter(filter_, bounds)
        docs = await collection.find(query, projection).sort("_id", 1).limit(limit + 1).to_list(None)
        if len(docs) > limit:
            docs = docs[:limit]
            return docs, docs[-1]["_id"]
        return docs, DONE
