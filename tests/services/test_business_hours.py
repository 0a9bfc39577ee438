"""Deadlines in business hours (server/services/business_hours.py): the working week of a team."""

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from server.schemas.team_settings import BusinessHours
from server.services.business_hours import add_business_hours, business_hours_between

SH = ZoneInfo("Asia/Shanghai")
WEEK = BusinessHours()  # Monday–Friday 09:00–18:00


def at(y, m, d, h, mi=0):
    return datetime(y, m, d, h, mi, tzinfo=SH)


@pytest.mark.parametrize(
    ("start", "hours", "due"),
    [
        (at(2026, 12, 1, 10), 4, at(2026, 12, 1, 14)),  # Tuesday, inside the day
        (at(2026, 12, 4, 17), 4, at(2026, 12, 7, 12)),  # Friday 17:00 → Monday noon
        (at(2026, 12, 5, 11), 1, at(2026, 12, 7, 10)),  # Saturday: the clock starts on Monday
        (at(2026, 12, 1, 7), 2, at(2026, 12, 1, 11)),  # before opening
        (at(2026, 12, 1, 20), 9, at(2026, 12, 2, 18)),  # after closing: a whole next day
        (at(2026, 12, 1, 10), 0.5, at(2026, 12, 1, 10, 30)),
    ],
)
def test_a_deadline_runs_only_in_working_hours(start, hours, due):
    got = add_business_hours(start, hours, WEEK, SH)
    assert got == due.astimezone(timezone.utc)
    assert business_hours_between(start, got, WEEK, SH) == pytest.approx(hours)


def test_holidays_and_a_custom_week_are_skipped():
    week = BusinessHours(days=[1, 2, 3, 4, 5, 6], start="08:30", end="12:30", holidays=[date(2026, 12, 2)])
    # Tuesday 12:00 + 2 h: 30 minutes on Tuesday, Wednesday is a holiday, 90 minutes on Thursday.
    assert add_business_hours(at(2026, 12, 1, 12), 2, week, SH) == at(2026, 12, 3, 10).astimezone(timezone.utc)
    # Saturday works in this week: 30 minutes on it, the rest on Monday.
    assert add_business_hours(at(2026, 12, 5, 12), 1, week, SH) == at(2026, 12, 7, 9).astimezone(timezone.utc)


def test_naive_datetimes_are_utc_and_nothing_is_negative():
    naive = datetime(2026, 12, 1, 2, 0)  # 10:00 in Shanghai
    assert add_business_hours(naive, 1, WEEK, SH) == at(2026, 12, 1, 11).astimezone(timezone.utc)
    assert business_hours_between(at(2026, 12, 2, 10), at(2026, 12, 1, 10), WEEK, SH) == 0.0


def test_a_week_without_working_time_is_refused():
    with pytest.raises(ValueError):
        BusinessHours(start="18:00", end="09:00")
    with pytest.raises(ValueError):
        BusinessHours(days=[1, 1])
