"""Business hours (工作时间): deadlines counted in working hours of a team's week.

A first-contact deadline of "4 business hours" or a ticket's SLA of "8 business hours" runs only
while the team works: a lead assigned on Friday at 17:00 with a 4-hour deadline and a 09:00–18:00
Monday–Friday week is due on Monday at 12:00. Pure functions over aware datetimes; the week comes
from the team's settings (``TeamSettings.business_hours``).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from server.schemas.team_settings import BusinessHours

_MAX_DAYS = 3660  # ten years of calendar days: a week with no working time is refused by the model


def _parse(hhmm: str) -> time:
    h, m = hhmm.split(":")
    return time(int(h), int(m))


def _window(day: date, week: BusinessHours, tz: ZoneInfo) -> tuple[datetime, datetime] | None:
    """The working window of ``day`` in UTC, or None on a day off."""
    if day.isoweekday() not in week.days or day in week.holidays:
        return None
    start = datetime.combine(day, _parse(week.start), tz)
    end = datetime.combine(day, _parse(week.end), tz)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def add_business_hours(start: datetime, hours: float, week: BusinessHours, tz: ZoneInfo) -> datetime:
    """The moment ``hours`` working hours after ``start`` (aware or UTC-naive), in UTC."""
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    left = timedelta(hours=hours)
    day = start.astimezone(tz).date()
    for _ in range(_MAX_DAYS):
        window = _window(day, week, tz)
        if window is not None:
            begin, end = max(window[0], start), window[1]
            if begin < end:
                if begin + left <= end:
                    return begin + left
                left -= end - begin
        day += timedelta(days=1)
    raise ValueError("no working time in ten years")


def business_hours_between(start: datetime, end: datetime, week: BusinessHours, tz: ZoneInfo) -> float:
    """Working hours from ``start`` to ``end`` (0 when ``end`` is not after ``start``)."""
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    if end.tzinfo is None:
        end = end.replace(tzinfo=timezone.utc)
    if end <= start:
        return 0.0
    total = timedelta()
    day, last = start.astimezone(tz).date(), end.astimezone(tz).date()
    while day <= last:
        window = _window(day, week, tz)
        if window is not None:
            begin, finish = max(window[0], start), min(window[1], end)
            if begin < finish:
                total += finish - begin
        day += timedelta(days=1)
    return total.total_seconds() / 3600
