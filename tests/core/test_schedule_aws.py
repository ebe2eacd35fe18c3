"""AWS ``cron(min hour dom month dow year)``: six fields, ``?``, days 1-7 = SUN-SAT, years."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from belfry.core.schedules import (
    AwsCronSchedule,
    ScheduleError,
    describe,
    next_instants,
    parse_schedule,
)

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args).replace(tzinfo=UTC)  # type: ignore[arg-type]


def test_every_day_at_noon() -> None:
    schedule = parse_schedule("cron(0 12 * * ? *)")
    assert isinstance(schedule, AwsCronSchedule)
    assert next_instants(schedule, utc(2027, 1, 1), 2) == [
        utc(2027, 1, 1, 12),
        utc(2027, 1, 2, 12),
    ]
    assert describe(schedule) == "At 12:00 every day (UTC)"


@pytest.mark.parametrize(
    ("aws", "cron"),
    [
        ("cron(0 9 ? * 2-6 *)", "0 9 * * 1-5"),  # MON-FRI
        ("cron(0 9 ? * 1 *)", "0 9 * * 0"),  # SUN
        ("cron(0 9 ? * 7 *)", "0 9 * * 6"),  # SAT
        ("cron(0 9 ? * 1,7 *)", "0 9 * * 0,6"),
        ("cron(0 9 ? * MON-FRI *)", "0 9 * * MON-FRI"),
        ("cron(0 9 ? * 6L *)", "0 9 * * 5L"),  # last Friday
        ("cron(0 9 ? * 2#1 *)", "0 9 * * 1#1"),  # first Monday
        ("cron(0 9 ? * L *)", "0 9 * * 6"),  # last day of the week: Saturday
        ("cron(0/15 * * * ? *)", "0/15 * * * *"),
        ("cron(0 18 L * ? *)", "0 18 L * *"),
        ("cron(30 8 1 JAN,JUL ? *)", "30 8 1 JAN,JUL *"),
    ],
)
def test_same_instants_as_the_equivalent_cron(aws: str, cron: str) -> None:
    for zone in ("UTC", "Europe/Berlin", "America/New_York"):
        start = utc(2026, 3, 1)
        assert next_instants(parse_schedule(aws, zone), start, 40) == next_instants(
            parse_schedule(cron, zone), start, 40
        )


def test_evaluated_on_the_jobs_wall_clock() -> None:
    schedule = parse_schedule("cron(0 9 ? * MON *)", "Europe/Berlin")
    instants = next_instants(schedule, utc(2027, 3, 20), 2)
    assert [i.astimezone(BERLIN).strftime("%a %H:%M %z") for i in instants] == [
        "Mon 09:00 +0100",
        "Mon 09:00 +0200",
    ]


def test_year_field_limits_the_years() -> None:
    schedule = parse_schedule("cron(0 0 1 1 ? 2028,2030-2031)")
    assert next_instants(schedule, utc(2026, 6, 1), 5) == [
        utc(2028, 1, 1),
        utc(2030, 1, 1),
        utc(2031, 1, 1),
    ]
    assert describe(schedule) == "At 00:00 on January 1, in 2028, 2030-2031 (UTC)"


def test_year_is_the_local_year() -> None:
    # 00:30 on 1 January 2028 in Berlin is still 2027 in UTC.
    schedule = parse_schedule("cron(30 0 1 1 ? 2028)", "Europe/Berlin")
    assert next_instants(schedule, utc(2027, 1, 1), 2) == [utc(2027, 12, 31, 23, 30)]


def test_year_step_and_end_of_schedule() -> None:
    schedule = parse_schedule("cron(0 0 1 1 ? 2027/2)")
    assert next_instants(schedule, utc(2026, 6, 1), 3) == [
        utc(2027, 1, 1),
        utc(2029, 1, 1),
        utc(2031, 1, 1),
    ]
    assert parse_schedule("cron(0 12 * * ? 2027)").next_after(utc(2027, 12, 31, 12)) is None


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("cron(0 12 * * ?)", "AWS cron takes 6 fields"),
        ("cron(0 12 * * * *)", "exactly one of day-of-month and day-of-week must be '?'"),
        ("cron(0 12 ? * ? *)", "exactly one of day-of-month and day-of-week must be '?'"),
        ("cron(? 12 * * ? *)", "bad minute field '?'"),
        ("cron(0 12 ? * 0 *)", "bad day-of-week field '0' (AWS numbers the days 1-7"),
        ("cron(0 12 ? * 2-8 *)", "bad day-of-week field '2-8'"),
        ("cron(0 12 * * ? 1969)", "bad year field '1969'"),
        ("cron(0 12 * * ? 2030-2027)", "bad year field '2030-2027'"),
        ("cron(0 12 * * ? next)", "bad year field 'next'"),
        ("cron(61 12 * * ? *)", "bad minute field '61'"),
        ("cron 0 12 * * ? *)", "cron needs 5 fields"),
    ],
)
def test_errors_name_the_field(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=r"^invalid") as caught:
        parse_schedule(expression)
    assert message in str(caught.value)
