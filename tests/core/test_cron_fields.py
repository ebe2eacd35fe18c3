"""belfry.core.cron_fields steps through wall-clock times itself: it must agree with cronsim,
whose iterator (on a UTC-tagged clock, where cronsim applies no DST rule) is the reference."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from itertools import islice

import pytest
from cronsim import CronSim, CronSimError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from belfry.core.cron_fields import parse_cron_fields
from belfry.core.schedules import parse_schedule

LIMITS = {
    "second": (0, 59),
    "minute": (0, 59),
    "hour": (0, 23),
    "day": (1, 31),
    "month": (1, 12),
    "weekday": (0, 7),
}
SPECIAL = {
    "second": [],
    "minute": [],
    "hour": [],
    "day": ["L", "LW", "LW,15", "1,L", "29", "31", "*/2", "1-7"],
    "month": ["FEB", "JAN,JUL", "APR-JUN", "2", "*/3"],
    "weekday": ["MON-FRI", "5L", "MON#2", "1#5", "SUN", "SAT,SUN", "0L", "7", "*/2"],
}


@st.composite
def field(draw: st.DrawFn, name: str) -> str:
    low, high = LIMITS[name]
    value = st.integers(low, high)
    kind = draw(st.sampled_from(["star", "step", "range", "list", "single", "special"]))
    if kind == "star" or (kind == "special" and not SPECIAL[name]):
        return "*"
    if kind == "step":
        return f"*/{draw(st.integers(1, high))}"
    if kind == "range":
        first = draw(value)
        last = draw(st.integers(first, high))
        step = draw(st.sampled_from(["", "", "/2", "/5"]))
        return f"{first}-{last}{step}"
    if kind == "list":
        return ",".join(str(item) for item in draw(st.lists(value, min_size=1, max_size=4)))
    if kind == "single":
        return str(draw(value))
    return draw(st.sampled_from(SPECIAL[name]))


@st.composite
def expressions(draw: st.DrawFn) -> str:
    names = ["minute", "hour", "day", "month", "weekday"]
    if draw(st.booleans()):
        names.insert(0, "second")
    return " ".join(draw(field(name)) for name in names)


def reference(expression: str, start: datetime, count: int) -> list[datetime]:
    return list(islice(CronSim(expression, start), count))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    expression=expressions(),
    start=st.datetimes(datetime(1990, 1, 1), datetime(2090, 1, 1)),
)
def test_next_wall_agrees_with_cronsim(expression: str, start: datetime) -> None:
    # Where Belfry departs from cronsim on purpose (5-5/2 is 5, as in cron; see the test
    # below), cronsim gets the equivalent it reads right.
    expression = " ".join(
        ",".join(re.sub(r"^(\w+)-\1/\d+$", r"\1", item, flags=re.I) for item in part.split(","))
        for part in expression.split()
    )
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except (CronSimError, ValueError, IndexError, KeyError):
        with pytest.raises((CronSimError, ValueError, IndexError, KeyError)):
            parse_cron_fields(expression)
        return
    begin = start.replace(tzinfo=UTC)
    expected = reference(expression, begin, 6)
    assert list(islice(parse_cron_fields(expression).walls(begin), 6)) == expected


@pytest.mark.parametrize(
    ("expression", "start"),
    [
        ("* * * * * *", datetime(2027, 12, 31, 23, 59, 58, 999_999)),
        ("59 59 23 31 12 *", datetime(2027, 12, 31, 23, 59, 59)),
        ("0 0 29 2 *", datetime(2027, 3, 1)),
        ("0 0 * 2 MON#5", datetime(2016, 3, 1)),  # Februaries with five Mondays: 28 years apart
        ("0 0 L 2 *", datetime(2027, 2, 28, 0, 0, 0, 1)),
        ("0 0 LW * *", datetime(2027, 7, 1)),
        ("0 0 13 * FRI", datetime(2026, 12, 31, 12)),
        ("*/7 */5 * * *", datetime(2027, 1, 1, 23, 58)),
    ],
)
def test_edges_agree_with_cronsim(expression: str, start: datetime) -> None:
    begin = start.replace(tzinfo=UTC)
    expected = reference(expression, begin, 4)
    assert list(islice(parse_cron_fields(expression).walls(begin), 4)) == expected


def test_gives_up_after_fifty_years_like_cronsim() -> None:
    # Days 1 and 31 (and, with the star, AND-ed) a fifth Monday of February: never.
    never = "0 0 */30 2 MON#5"
    start = datetime(2027, 1, 1, tzinfo=UTC)
    assert reference(never, start, 1) == []
    assert parse_cron_fields(never).next_wall(start) is None
    # A match a few years away is still found: 2100 is not a leap year.
    rare = "0 0 29 2 *"
    cursor = datetime(2096, 3, 1, tzinfo=UTC)
    assert parse_cron_fields(rare).next_wall(cursor) == datetime(2104, 2, 29, tzinfo=UTC)


def test_the_end_of_time() -> None:
    fields = parse_cron_fields("0 0 * * *")
    assert fields.next_wall(datetime.max) is None
    assert fields.next_wall(datetime(9999, 12, 31, 12)) is None
    assert fields.next_wall(datetime(9999, 12, 30, 12)) == datetime(9999, 12, 31)


def test_walls_are_strictly_after_and_keep_the_label() -> None:
    fields = parse_cron_fields("30 2 * * *")
    naive = datetime(2027, 1, 1, 2, 30)
    assert fields.next_wall(naive) == datetime(2027, 1, 2, 2, 30)
    assert fields.next_wall(naive - timedelta(microseconds=1)) == naive
    tagged = naive.replace(tzinfo=UTC)
    assert fields.next_wall(tagged) == datetime(2027, 1, 2, 2, 30, tzinfo=UTC)


def test_a_one_value_range_with_a_step_is_that_value() -> None:
    # cron reads 5-5/2 as {5}; cronsim alone would read it as 5/2 (5, 7, ... 59).
    schedule = parse_schedule("5-5/2 * * * *")
    after = datetime(2027, 1, 1, tzinfo=UTC)
    first = schedule.next_after(after)
    assert first == datetime(2027, 1, 1, 0, 5, tzinfo=UTC)
    assert schedule.next_after(first) == datetime(2027, 1, 1, 1, 5, tzinfo=UTC)
    weekly = parse_schedule("0 9 * * MON-mon/2")
    assert weekly.next_after(after) == datetime(2027, 1, 4, 9, tzinfo=UTC)  # a Monday
