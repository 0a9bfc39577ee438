"""Time comes from a clock object so jobs and tests can run "as of" a chosen moment."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


def _bson_precision(moment: datetime) -> datetime:
    """BSON datetimes hold milliseconds: a value we return must equal the one we store."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def as_utc(value: datetime | str) -> datetime:
    """A datetime read back from the database, as an aware UTC datetime.

    nx-27017 returns a top-level field written by ``$set`` on an existing document as a naive UTC
    string ('2026-11-23 01:02:00.123000'), not a datetime; real MongoDB returns the datetime.
    """
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


class Clock:
    def now(self) -> datetime:
        return _bson_precision(datetime.now(timezone.utc))


class FixedClock(Clock):
    """A clock that stands still until moved; for ``run-job --now`` and tests."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("a fixed clock needs an aware datetime")
        self.at = at.astimezone(timezone.utc)

    def now(self) -> datetime:
        return _bson_precision(self.at)

    def advance(self, **delta: float) -> datetime:
        self.at += timedelta(**delta)
        return self.at
