"""Quartz's ``nW`` in day-of-month: the weekday nearest day n, never leaving the month."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from belfry.core.cron_fields import nearest_weekday
from belfry.core.schedules import (
    CronSchedule,
    DstRules,
    ScheduleError,
    describe,
    next_instants,
    parse_schedule,
)

CAIRO = ZoneInfo("Africa/Cairo")
APIA = ZoneInfo("Pacific/Apia")


def utc(*args: int) -> datetime:
    return datetime(*args).replace(tzinfo=UTC)  # type: ignore[arg-type]


def local(zone: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=zone, fold=fold).astimezone(UTC)  # type: ignore[misc]


# (n, year, month, the day that runs or None); weekdays worked out from a printed calendar.
TABLE = [
    pytest.param(15, 2027, 1, 15, id="15th-a-friday-itself"),
    pytest.param(15, 2027, 5, 14, id="15th-a-saturday-friday-before"),
    pytest.param(15, 2026, 11, 16, id="15th-a-sunday-monday-after"),
    pytest.param(1, 2027, 5, 3, id="1st-a-saturday-monday-the-3rd"),
    pytest.param(1, 2026, 8, 3, id="1st-a-saturday-again"),
    pytest.param(1, 2026, 2, 2, id="1st-a-sunday-monday-the-2nd"),
    pytest.param(31, 2027, 1, 29, id="31st-a-sunday-friday-the-29th"),
    pytest.param(31, 2026, 10, 30, id="31st-a-saturday-friday-the-30th"),
    pytest.param(31, 2026, 5, 29, id="31st-a-sunday-in-may"),
    pytest.param(30, 2024, 6, 28, id="30th-last-day-a-sunday"),
    pytest.param(30, 2026, 5, 29, id="30th-a-saturday"),
    pytest.param(30, 2027, 4, 30, id="30th-last-day-a-friday"),
    pytest.param(31, 2027, 4, None, id="no-31st-in-april"),
    pytest.param(30, 2027, 2, None, id="no-30th-in-february"),
    pytest.param(29, 2027, 2, None, id="no-29th-in-a-common-february"),
    pytest.param(29, 2032, 2, 27, id="leap-29th-a-sunday-friday-the-27th"),
    pytest.param(29, 2036, 2, 29, id="leap-29th-a-friday"),
]


@pytest.mark.parametrize(("n", "year", "month", "expected"), TABLE)
def test_nearest_weekday_table(n: int, year: int, month: int, expected: int | None) -> None:
    assert nearest_weekday(year, month, n) == expected
    schedule = parse_schedule(f"0 12 {n}W * *")
    first = date(year, month, 1)
    runs = [
        instant.date()
        for instant in next_instants(schedule, utc(year, month, 1) - timedelta(seconds=1), 3)
        if (instant.year, instant.month) == (year, month)
    ]
    assert runs == ([] if expected is None else [first.replace(day=expected)])


def test_a_year_of_15w() -> None:
    schedule = parse_schedule("30 9 15W * *")
    assert [i.date().isoformat() for i in next_instants(schedule, utc(2026, 12, 31), 12)] == [
        "2027-01-15",  # Friday
        "2027-02-15",  # Monday
        "2027-03-15",  # Monday
        "2027-04-15",  # Thursday
        "2027-05-14",  # the 15th is a Saturday
        "2027-06-15",
        "2027-07-15",
        "2027-08-16",  # the 15th is a Sunday
        "2027-09-15",
        "2027-10-15",
        "2027-11-15",
        "2027-12-15",
    ]


def brute_force(n: int, year: int, month: int) -> date | None:
    """The weekday of the month closest to day n, by walking every day of the month."""
    days = []
    day = date(year, month, 1)
    while day.month == month:
        days.append(day)
        day += timedelta(days=1)
    if n > len(days):
        return None
    weekdays = [day for day in days if day.weekday() < 5]
    return min(weekdays, key=lambda day: abs(day.day - n))


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 31),
    year=st.integers(1990, 2060),
    month=st.integers(1, 12),
    form=st.sampled_from(["five", "six", "aws", "h", "names"]),
    zone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"]),
)
def test_agrees_with_a_brute_force_day_walk(
    n: int, year: int, month: int, form: str, zone: str
) -> None:
    expression = {
        "five": f"0 12 {n}W * *",
        "six": f"5 0 12 {n}W * *",
        "aws": f"cron(0 12 {n}W * ? *)",
        "h": f"H 12 {n}W * *",
        "names": f"0 12 {n}w JAN-DEC *",
    }[form]
    schedule = parse_schedule(expression, zone, seed="team/job")
    start = datetime(year, month, 1, tzinfo=ZoneInfo(zone))
    # Twelve months from ``start``: one run in each month that has day n, none in others.
    expected = []
    for offset in range(12):
        y, m = divmod(month - 1 + offset, 12)
        day = brute_force(n, year + y, m + 1)
        if day is not None:
            expected.append(day)
    end = datetime(year + 1, month, 1, tzinfo=ZoneInfo(zone))
    instants = [i for i in next_instants(schedule, start, 13) if i < end]
    assert [i.astimezone(ZoneInfo(zone)).date() for i in instants] == expected
    assert {i.astimezone(ZoneInfo(zone)).hour for i in instants} <= {12}


def test_months_without_day_n_are_passed_over() -> None:
    schedule = parse_schedule("0 0 31W * *")
    runs = next_instants(schedule, utc(2027, 1, 1), 7)
    assert [i.date().isoformat() for i in runs] == [
        "2027-01-29",  # the 31st is a Sunday
        "2027-03-31",
        "2027-05-31",
        "2027-07-30",  # the 31st is a Saturday
        "2027-08-31",
        "2027-10-29",  # the 31st is a Sunday
        "2027-12-31",
    ]
    # Only in months that can have day n; February 29 in leap years only.
    leap = parse_schedule("0 0 29W 2 *")
    assert [i.date().isoformat() for i in next_instants(leap, utc(2027, 1, 1), 2)] == [
        "2028-02-29",  # a Tuesday
        "2032-02-27",  # the 29th is a Sunday, the last day: Friday the 27th
    ]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 0 1W,15W * *", "bad day-of-month field '1W,15W' (nW takes a single day"),
        ("0 0 1-15W * *", "bad day-of-month field '1-15W' (nW takes a single day"),
        ("0 0 15W/2 * *", "not a list, range or step"),
        ("0 0 LW,15W * *", "bad day-of-month field 'LW,15W'"),
        ("0 0 15W * MON", "day-of-month '15W' needs day-of-week '*' (or '?' in AWS cron)"),
        ("0 0 15W * 1-5", "not '1-5': cron runs on the days either field matches"),
        ("0 0 0 15W * */2", "needs day-of-week '*'"),
        ("0 0 32W * *", "bad day-of-month field '32W' (allowed: 1-31, L, LW, or nW"),
        ("0 0 0W * *", "bad day-of-month field '0W'"),
        ("0 0 W * *", "bad day-of-month field 'W'"),
        ("0 0 31W 2 *", "day-of-month '31W' never occurs in month '2'"),
        ("0 0 31W 4,6 *", "day-of-month '31W' never occurs in month '4,6'"),
        ("0 0 15W * ?", "'?' is Quartz syntax, use '*'"),
        ("cron(0 12 1W,15W * ? *)", "bad day-of-month field '1W,15W'"),
    ],
)
def test_errors_name_the_field(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=r"^invalid") as caught:
        parse_schedule(expression)
    assert message in str(caught.value)


def test_lw_still_works_alone_and_in_a_list() -> None:
    assert parse_schedule("0 0 LW * *").next_after(utc(2027, 7, 1)) == utc(2027, 7, 30)
    assert next_instants(parse_schedule("0 0 LW,15 * *"), utc(2027, 7, 1), 2) == [
        utc(2027, 7, 15),
        utc(2027, 7, 30),
    ]


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("0 9 15W * *", "At 09:00 on the weekday nearest day 15 of every month (UTC)"),
        ("0 9 1W JAN,JUL *", "At 09:00 on the weekday nearest day 1 of January and July (UTC)"),
        ("cron(30 8 15W * ? *)", "At 08:30 on the weekday nearest day 15 of every month (UTC)"),
        ("10 0 9 31W * *", "At 09:00:10 on the weekday nearest day 31 of every month (UTC)"),
    ],
)
def test_describe(expression: str, words: str) -> None:
    assert describe(parse_schedule(expression)) == words


def test_fields_keep_what_was_written_and_h_is_expanded() -> None:
    schedule = parse_schedule("H H 15W * *", seed="a/c")
    assert isinstance(schedule, CronSchedule)
    assert schedule.fields == "47 1 15W * *"
    assert schedule.next_after(utc(2027, 5, 1)) == utc(2027, 5, 14, 1, 47)


# --- DST: nW picks the day; the DST rules apply to that day's wall times as to any other.
# Africa/Cairo changes on weekdays: 2023-04-28 (a Friday) 00:00 EET -> 01:00 EEST, and
# 2023-10-26 (a Thursday) 24:00 EEST -> 23:00 EET.


def test_cairo_transitions_are_where_the_cases_assume() -> None:
    assert utc(2023, 4, 27, 21, 59).astimezone(CAIRO).isoformat() == "2023-04-27T23:59:00+02:00"
    assert utc(2023, 4, 27, 22).astimezone(CAIRO).isoformat() == "2023-04-28T01:00:00+03:00"
    last_summer_minute = utc(2023, 10, 26, 20, 59).astimezone(CAIRO)
    assert last_summer_minute.isoformat() == "2023-10-26T23:59:00+03:00"
    assert utc(2023, 10, 26, 21).astimezone(CAIRO).isoformat() == "2023-10-26T23:00:00+02:00"


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (DstRules(), [local(CAIRO, 2023, 4, 28, 1)]),  # 00:30 is in the gap: right after it
        (DstRules(gap="skip"), []),
    ],
    ids=["run_after", "skip"],
)
def test_gap_on_the_nearest_weekday(rules: DstRules, expected: list[datetime]) -> None:
    # The 29th is a Saturday: 29W is Friday the 28th, the day of the gap.
    schedule = parse_schedule("30 0 29W 4 *", "Africa/Cairo", dst=rules)
    runs = [i for i in next_instants(schedule, utc(2023, 4, 1), 2) if i < utc(2023, 5, 1)]
    assert runs == expected


@pytest.mark.parametrize(
    ("rules", "passes"), [(DstRules(), 1), (DstRules(repeat="both"), 2)], ids=["once", "both"]
)
def test_repeated_hour_on_the_nearest_weekday(rules: DstRules, passes: int) -> None:
    schedule = parse_schedule("30 23 26W 10 *", "Africa/Cairo", dst=rules)
    runs = [i for i in next_instants(schedule, utc(2023, 10, 1), 3) if i < utc(2023, 11, 1)]
    expected = [local(CAIRO, 2023, 10, 26, 23, 30), local(CAIRO, 2023, 10, 26, 23, 30, fold=1)]
    assert runs == expected[:passes]
    # A wildcard hour runs in both passes whatever the rules.
    wildcard = parse_schedule("30 * 26W 10 *", "Africa/Cairo", dst=rules)
    late = [i for i in next_instants(wildcard, utc(2023, 10, 26, 19), 5) if i < utc(2023, 10, 27)]
    assert [i.astimezone(CAIRO).strftime("%H:%M%z") for i in late] == [
        "22:30+0300",
        "23:30+0300",
        "23:30+0200",
    ]


def test_apia_skipped_friday() -> None:
    # 2011-12-30, a Friday, never happened in Apia: its noon runs at the end of the gap.
    schedule = parse_schedule("0 12 30W 12 *", "Pacific/Apia")
    assert schedule.next_after(utc(2011, 12, 1)) == local(APIA, 2011, 12, 31)
    skip = parse_schedule("0 12 30W 12 *", "Pacific/Apia", dst=DstRules(gap="skip"))
    assert skip.next_after(utc(2011, 12, 1)) == local(APIA, 2012, 12, 31, 12)  # a Monday
