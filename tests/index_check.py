"""Record every command the app sends (PyMongo command monitoring) and check that each filter and
sort has an index in ``server/db.py`` that serves it.

A query shape is (equality fields, sort, range fields). An index serves it when its leading keys are
equality fields of the query (at least one, when there are any), followed directly by the sort
keys in order (or all reversed). ``_id`` equality is always served by the default ``_id`` index,
and a trailing ``_id`` in a sort is the pagination tie-breaker (see docs/mongodb-compat.md).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

from pymongo.monitoring import CommandFailedEvent, CommandListener, CommandStartedEvent, CommandSucceededEvent

from server.db import INDEXES

IGNORED_COMMANDS = {"endSessions", "ping", "createIndexes", "listIndexes", "dropDatabase", "hello", "isMaster", "buildInfo", "killCursors", "getMore", "insert"}
EQ_OPS = {"$eq", "$in"}
RANGE_OPS = {"$gt", "$gte", "$lt", "$lte", "$regex"}


@dataclass
class QueryShape:
    collection: str
    eq: frozenset
    sort: tuple
    ranges: frozenset
    command: str

    def describe(self) -> str:
        return f"{self.command} {self.collection} eq={sorted(self.eq)} sort={list(self.sort)} range={sorted(self.ranges)}"


@dataclass
class CommandRecorder(CommandListener):
    """Thread-safe log of started commands; counts per request and shapes for the index check."""

    commands: list[CommandStartedEvent] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def started(self, event: CommandStartedEvent) -> None:
        with self._lock:
            self.commands.append(event)

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass

    @contextmanager
    def counting(self):
        """``with recorder.counting() as names: ...`` → the names of the commands sent inside."""
        start = len(self.commands)
        names: list[str] = []
        yield names
        names.extend(e.command_name for e in self.commands[start:] if e.command_name not in ("endSessions", "killCursors"))

    def shapes(self) -> list[QueryShape]:
        found = []
        for event in list(self.commands):
            found.extend(shapes_of(event.command_name, event.command))
        return found


def _split(filter_: dict, eq: set, ranges: set) -> list[dict]:
    """Collect equality and range fields; return the ``$or`` branches to check separately."""
    branches: list[dict] = []
    for key, value in (filter_ or {}).items():
        if key == "$and":
            for part in value:
                branches.extend(_split(part, eq, ranges))
        elif key in ("$or", "$nor"):
            branches.append({"$or": value})
        elif key.startswith("$"):
            continue
        elif isinstance(value, dict) and value and all(k.startswith("$") for k in value):
            ops = set(value)
            if ops & EQ_OPS:
                eq.add(key)
            elif ops & RANGE_OPS:
                ranges.add(key)
        else:
            eq.add(key)
    return branches


def _shapes_for(collection: str, command: str, filter_: dict, sort: tuple) -> list[QueryShape]:
    eq: set = set()
    ranges: set = set()
    ors = _split(filter_, eq, ranges)
    if not ors:
        return [QueryShape(collection, frozenset(eq), sort, frozenset(ranges), command)]
    shapes = []
    for or_part in ors:
        for branch in or_part["$or"]:
            b_eq, b_ranges = set(eq), set(ranges)
            _split(branch, b_eq, b_ranges)
            shapes.append(QueryShape(collection, frozenset(b_eq), sort, frozenset(b_ranges), command))
    return shapes


def _sort_tuple(sort: dict | None) -> tuple:
    return tuple((k, int(v)) for k, v in (sort or {}).items())


def shapes_of(name: str, cmd: dict) -> list[QueryShape]:
    if name in IGNORED_COMMANDS:
        return []
    coll = cmd.get(name)
    if name == "find":
        return _shapes_for(coll, name, cmd.get("filter", {}), _sort_tuple(cmd.get("sort")))
    if name == "findAndModify":
        return _shapes_for(coll, name, cmd.get("query", {}), _sort_tuple(cmd.get("sort")))
    if name in ("update", "delete"):
        shapes = []
        for stmt in cmd.get("updates" if name == "update" else "deletes", []):
            shapes.extend(_shapes_for(coll, name, stmt.get("q", {}), ()))
        return shapes
    if name in ("count", "distinct"):
        return _shapes_for(coll, name, cmd.get("query", {}), ())
    if name == "aggregate":
        pipeline = cmd.get("pipeline", [])
        match = pipeline[0].get("$match", {}) if pipeline and "$match" in pipeline[0] else {}
        sort = pipeline[1].get("$sort") if len(pipeline) > 1 and "$sort" in pipeline[1] else None
        return _shapes_for(coll, name, match, _sort_tuple(sort))
    return []


def serves(keys: tuple, shape: QueryShape) -> bool:
    names = [k for k, _ in keys]
    m = 0
    while m < len(names) and names[m] in shape.eq:
        m += 1
    sort = tuple(s for s in shape.sort)
    if sort and sort[-1][0] == "_id" and len(sort) > 1:
        sort = sort[:-1]  # pagination tie-breaker
    if shape.eq and m == 0:
        return False
    if sort:
        if sort == (("_id", 1),) or sort == (("_id", -1),):
            return True
        window = tuple(keys[m:m + len(sort)])
        flipped = tuple((k, -d) for k, d in sort)
        return window in (sort, flipped)
    if m > 0:
        return True
    return bool(names) and names[0] in shape.ranges


def unserved(shapes: list[QueryShape]) -> list[str]:
    by_collection: dict[str, list[tuple]] = {}
    unique: dict[str, list[set]] = {}
    for spec in INDEXES:
        by_collection.setdefault(spec.collection, []).append(spec.keys)
        if spec.unique:
            unique.setdefault(spec.collection, []).append({k for k, _ in spec.keys})
    missing = []
    for shape in shapes:
        if "_id" in shape.eq:
            continue
        if not shape.eq and not shape.ranges and shape.sort in ((), (("_id", 1),), (("_id", -1),)):
            continue  # the whole collection in _id order (admin lists), served by _id
        if any(keys <= shape.eq for keys in unique.get(shape.collection, [])):
            continue  # an exact match on a unique index finds at most one document
        if not any(serves(keys, shape) for keys in by_collection.get(shape.collection, [])):
            missing.append(shape.describe())
    return sorted(set(missing))


_DATETIME_OPS = ("$set", "$push", "$addToSet", "$max", "$min")


def bare_datetime_writes(events) -> list[str]:
    """Update operators that write a bare datetime value, or push a sub-document. nx-27017 stores
    both as strings, so the code writes datetimes inside documents, by replacement, or with
    ``$currentDate``, and writes arrays of sub-documents whole."""
    from datetime import datetime

    found = []
    for event in events:
        cmd = event.command
        if event.command_name == "update":
            updates = [u.get("u", {}) for u in cmd.get("updates", [])]
        elif event.command_name == "findAndModify":
            updates = [cmd.get("update") or {}]
        else:
            continue
        for update in updates:
            if not isinstance(update, dict):
                continue
            for op in _DATETIME_OPS:
                for path, value in (update.get(op) or {}).items():
                    values = value.get("$each", []) if isinstance(value, dict) and "$each" in value else [value]
                    if any(isinstance(v, datetime) for v in values):
                        found.append(f"{event.command_name} {cmd.get(event.command_name)}: {op} {path}")
                    if op in ("$push", "$addToSet") and any(isinstance(v, dict) and not (set(v) & {"$each"}) for v in values):
                        found.append(f"{event.command_name} {cmd.get(event.command_name)}: {op} of a sub-document at {path}")
    return sorted(set(found))
