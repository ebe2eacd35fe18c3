"""Calendars: what users write, what an instant's membership is, and what a gate does with
a job's occurrences (skip, defer, coalesce). Random calendars against an independent
brute-force walk are in test_calendars_properties.py."""

from __future__ import annotations

import time as stopwatch
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML
from zone_changes import offset_changes

from belfry.core.calendars import (
    Calendar,
    CalendarError,
    CalendarGate,
    CalendarSpec,
    DateRange,
    GateVerdict,
    WeeklyWindow,
    compile_calendars,
)
from belfry.core.names import NAME_RULE
from belfry.core.schedules import parse_schedule

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")

EXAMPLE = """
calendars:
  - name: holidays
    timezone: Europe/Berlin
    description: Public holidays
    dates: [2027-12-24, 2027-12-25]
    ranges:
      - {from: 2027-12-27, to: 2027-12-31}
  - name: weekends
    weekly:
      - {days: "SAT,SUN"}
  - name: business-hours
    timezone: America/New_York
    weekly:
      - {days: MON-FRI, from: "09:00", to: "17:30"}
      - {days: [SAT], from: "10:00", to: "12:00"}
      - {days: SUN}
      - {days: FRI, from: "22:00", to: "06:00"}
    exclude: [holidays]
  - name: closed
    include: [holidays, weekends]
"""


def utc(*args: int) -> datetime:
    return datetime(*args).replace(tzinfo=UTC)  # type: ignore[arg-type]


def local(zone: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    return datetime(*args).replace(tzinfo=zone, fold=fold)  # type: ignore[arg-type]


def specs_of(text: str) -> list[CalendarSpec]:
    document = YAML(typ="safe").load(text)
    return [CalendarSpec.model_validate(item) for item in document["calendars"]]


def compiled(*documents: dict[str, Any]) -> dict[str, Calendar]:
    return compile_calendars([CalendarSpec.model_validate(item) for item in documents])


def one(document: dict[str, Any]) -> Calendar:
    return compiled({"name": "c", **document})["c"]


def error_of(document: dict[str, Any]) -> tuple[str, str]:
    """The one validation error of ``document``: its field path and message."""
    with pytest.raises(ValidationError) as caught:
        CalendarSpec.model_validate({"name": "c", **document})
    errors = caught.value.errors()
    assert len(errors) == 1, errors
    return ".".join(str(part) for part in errors[0]["loc"]), errors[0]["msg"]


@pytest.fixture(scope="module")
def example() -> dict[str, Calendar]:
    return compile_calendars(specs_of(EXAMPLE))


# --- the specification ---------------------------------------------------------------------


def test_example_parses_with_defaults_and_parsed_values() -> None:
    holidays, weekends, business, closed = specs_of(EXAMPLE)
    assert holidays.timezone == "Europe/Berlin"
    assert holidays.description == "Public holidays"
    assert holidays.dates == [date(2027, 12, 24), date(2027, 12, 25)]
    assert holidays.ranges == [DateRange(start=date(2027, 12, 27), end=date(2027, 12, 31))]
    assert weekends.timezone == "UTC"
    assert weekends.weekly[0].weekdays == {5, 6}
    first, saturday, sunday, night = business.weekly
    assert (first.weekdays, first.start, first.end) == ({0, 1, 2, 3, 4}, time(9), time(17, 30))
    assert (saturday.weekdays, saturday.start, saturday.end) == ({5}, time(10), time(12))
    assert (sunday.start_second, sunday.end_second) == (0, 86_400)
    assert sunday.end is None  # 24:00
    assert (night.start_second, night.end_second, night.wraps) == (79_200, 21_600, True)
    assert business.exclude == ["holidays"]
    assert closed.include == ["holidays", "weekends"]


@pytest.mark.parametrize(
    ("days", "weekdays"),
    [
        ("MON-FRI", {0, 1, 2, 3, 4}),
        ("mon-fri", {0, 1, 2, 3, 4}),
        ("FRI-MON", {4, 5, 6, 0}),
        ("SUN-TUE", {6, 0, 1}),
        ("WED-WED", {2}),
        ("SAT,SUN", {5, 6}),
        (" sat , Sun ", {5, 6}),
        (["SAT"], {5}),
        (["MON", "wed-fri"], {0, 2, 3, 4}),
        (["MON,TUE", "SUN"], {0, 1, 6}),
        ("MON-SUN", {0, 1, 2, 3, 4, 5, 6}),
    ],
)
def test_days(days: str | list[str], weekdays: set[int]) -> None:
    assert WeeklyWindow.model_validate({"days": days}).weekdays == weekdays


def test_to_document_omits_defaults_and_round_trips() -> None:
    for spec in specs_of(EXAMPLE):
        document = spec.to_document()
        assert CalendarSpec.model_validate(document) == spec
    holidays, _, business, closed = (spec.to_document() for spec in specs_of(EXAMPLE))
    assert holidays == {
        "name": "holidays",
        "timezone": "Europe/Berlin",
        "description": "Public holidays",
        "dates": ["2027-12-24", "2027-12-25"],
        "ranges": [{"from": "2027-12-27", "to": "2027-12-31"}],
    }
    assert business["weekly"] == [
        {"days": "MON-FRI", "from": "09:00", "to": "17:30"},
        {"days": ["SAT"], "from": "10:00", "to": "12:00"},
        {"days": "SUN"},
        {"days": "FRI", "from": "22:00", "to": "06:00"},
    ]
    assert business["timezone"] == "America/New_York"
    assert business["exclude"] == ["holidays"]
    assert closed == {"name": "closed", "include": ["holidays", "weekends"]}


def test_times_dump_with_seconds_only_when_given_and_24_00_as_written() -> None:
    spec = CalendarSpec.model_validate(
        {
            "name": "c",
            "weekly": [
                {"days": "MON", "from": "9:05:30", "to": "24:00"},
                {"days": "TUE", "from": "22:00:00", "to": "24:00:00"},
                {"days": "WED", "from": time(1, 2, 3), "to": time(4, 5)},
            ],
        }
    )
    assert spec.to_document()["weekly"] == [
        {"days": "MON", "from": "09:05:30"},
        {"days": "TUE", "from": "22:00"},
        {"days": "WED", "from": "01:02:03", "to": "04:05"},
    ]
    # Without dropping defaults, 24:00 is written out, never as null.
    dumped = spec.model_dump(mode="json", by_alias=True)["weekly"]
    assert [window["to"] for window in dumped] == ["24:00", "24:00", "04:05"]
    assert CalendarSpec.model_validate(spec.model_dump(mode="json", by_alias=True)) == spec
    assert CalendarSpec.model_validate(spec.model_dump()) == spec


def test_python_names_work_too() -> None:
    window = WeeklyWindow(days="MON", start=time(9), end=time(17))
    assert window.describe() == "MON 09:00-17:00"
    assert WeeklyWindow(days=["FRI"], start=time(22), end=time(6)).describe() == (
        "FRI 22:00-06:00 (next day)"
    )
    assert WeeklyWindow(days="SUN").describe() == "SUN 00:00-24:00"
    assert DateRange(start=date(2027, 1, 1), end=date(2027, 1, 1)).end == date(2027, 1, 1)


@pytest.mark.parametrize(
    ("document", "field", "message"),
    [
        (
            {"ranges": [{"from": "2027-12-31", "to": "2027-12-27"}]},
            "ranges.0.to",
            "Value error, 2027-12-27 is before from 2027-12-31",
        ),
        (
            {"weekly": [{"days": "MOM"}]},
            "weekly.0.days",
            "Value error, unknown day 'MOM' (did you mean MON?)",
        ),
        (
            {"weekly": [{"days": ["SAT", "XYZ-SUN"]}]},
            "weekly.0.days",
            "Value error, unknown day 'XYZ' (use MON, TUE, WED, THU, FRI, SAT or SUN)",
        ),
        (
            {"weekly": [{"days": "MON,,FRI"}]},
            "weekly.0.days",
            "Value error, empty day in 'MON,,FRI' (write e.g. MON-FRI or SAT,SUN)",
        ),
        (
            {"weekly": [{"days": []}]},
            "weekly.0.days",
            "Value error, name at least one day, e.g. MON-FRI",
        ),
        (
            {"weekly": [{"days": "MON", "from": "25:00"}]},
            "weekly.0.from",
            "Value error, not a time of day: '25:00' (write HH:MM or HH:MM:SS, "
            "from 00:00 to 23:59:59)",
        ),
        (
            {"weekly": [{"days": "MON", "from": "24:00"}]},
            "weekly.0.from",
            "Value error, not a time of day: '24:00' (24:00 is only allowed in 'to')",
        ),
        (
            {"weekly": [{"days": "MON", "to": "24:01"}]},
            "weekly.0.to",
            "Value error, not a time of day: '24:01' (write HH:MM or HH:MM:SS, "
            "from 00:00 to 23:59:59 or 24:00)",
        ),
        (
            {"weekly": [{"days": "MON", "to": "9am"}]},
            "weekly.0.to",
            "Value error, not a time of day: '9am' (write HH:MM or HH:MM:SS, "
            "from 00:00 to 23:59:59 or 24:00)",
        ),
        (
            {"weekly": [{"days": "MON", "from": 540}]},
            "weekly.0.from",
            "Value error, not a time of day: 540 (write HH:MM or HH:MM:SS, from 00:00 to 23:59:59)",
        ),
        (
            {"weekly": [{"days": "MON", "from": "09:00:00.5"}]},
            "weekly.0.from",
            "Value error, not a time of day: '09:00:00.5' (write HH:MM or HH:MM:SS, "
            "from 00:00 to 23:59:59)",
        ),
        (
            {"weekly": [{"days": "MON", "form": "09:00"}]},
            "weekly.0.form",
            "Extra inputs are not permitted",
        ),
        (
            {"dates": ["2027-02-30"]},
            "dates.0",
            "Value error, not a date: '2027-02-30' (write YYYY-MM-DD)",
        ),
        (
            {"dates": [20271224]},
            "dates.0",
            "Value error, not a date: 20271224 (write YYYY-MM-DD)",
        ),
        (
            {"dates": [datetime(2027, 12, 24, 10)]},
            "dates.0",
            "Value error, not a date: datetime.datetime(2027, 12, 24, 10, 0) (write YYYY-MM-DD)",
        ),
        (
            {"dates": ["2027-12-24"], "timezone": "Europe/Berln"},
            "timezone",
            "Value error, unknown time zone 'Europe/Berln' (did you mean Europe/Berlin?)",
        ),
        (
            {"include": ["ok", "Not OK"]},
            "include.1",
            f"Value error, 'Not OK': {NAME_RULE}",
        ),
        (
            {"dates": ["2027-12-24"], "exclude": ["x/y"]},
            "exclude.0",
            f"Value error, 'x/y': {NAME_RULE}",
        ),
        (
            {"exclude": ["holidays"]},
            "",
            "Value error, a calendar needs dates, ranges, weekly windows or include",
        ),
        ({}, "", "Value error, a calendar needs dates, ranges, weekly windows or include"),
    ],
)
def test_validation_errors_name_the_field(
    document: dict[str, Any], field: str, message: str
) -> None:
    assert error_of(document) == (field, message)


def test_name_is_checked() -> None:
    with pytest.raises(ValidationError) as caught:
        CalendarSpec.model_validate({"name": "Holidays!", "dates": ["2027-12-24"]})
    (error,) = caught.value.errors()
    assert error["loc"] == ("name",)
    assert error["msg"] == f"Value error, {NAME_RULE}"


def test_specs_are_frozen() -> None:
    spec = CalendarSpec.model_validate({"name": "c", "dates": ["2027-12-24"]})
    with pytest.raises(ValidationError):
        spec.name = "d"  # type: ignore[misc]


# --- compiling: references -----------------------------------------------------------------


def test_compile_resolves_every_calendar_by_name(example: dict[str, Calendar]) -> None:
    assert list(example) == ["holidays", "weekends", "business-hours", "closed"]
    assert example["holidays"].zone == BERLIN
    assert example["closed"].zone == ZoneInfo("UTC")
    assert example["business-hours"].name == "business-hours"


@pytest.mark.parametrize(
    ("documents", "message"),
    [
        (
            [
                {"name": "holidays", "dates": ["2027-12-24"]},
                {"name": "business-hours", "weekly": [{"days": "MON"}], "exclude": ["holdays"]},
            ],
            "calendars[business-hours].exclude: unknown calendar 'holdays' "
            "(did you mean holidays?)",
        ),
        (
            [
                {"name": "holidays", "dates": ["2027-12-24"]},
                {"name": "weekends", "weekly": [{"days": "SAT,SUN"}]},
                {"name": "closed", "include": ["zzz"]},
            ],
            "calendars[closed].include: unknown calendar 'zzz' (known: closed, holidays, weekends)",
        ),
        (
            [{"name": "a", "include": ["b"]}],
            "calendars[a].include: unknown calendar 'b' (known: a)",
        ),
        (
            [{"name": "a", "include": ["a"]}],
            "calendars[a].include: a includes itself (a -> a)",
        ),
        (
            [{"name": "a", "include": ["b"]}, {"name": "b", "include": ["a"]}],
            "calendars[a].include: a includes itself (a -> b -> a)",
        ),
        (
            [
                {"name": "x", "dates": ["2027-01-01"]},
                {"name": "a", "include": ["x", "b"]},
                {"name": "b", "include": ["c"]},
                {"name": "c", "dates": ["2027-01-01"], "exclude": ["a"]},
            ],
            "calendars[a].include: a includes itself (a -> b -> c -> a)",
        ),
        (
            [{"name": "a", "dates": ["2027-01-01"], "exclude": ["a"]}],
            "calendars[a].exclude: a excludes itself (a -> a)",
        ),
        (
            [
                {"name": "a", "dates": ["2027-01-01"]},
                {"name": "b", "dates": ["2027-01-02"]},
                {"name": "a", "dates": ["2027-01-03"]},
            ],
            "calendars[a].name: duplicate calendar name 'a' (calendars 1 and 3)",
        ),
    ],
)
def test_compile_errors_name_the_field(documents: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(CalendarError) as caught:
        compiled(*documents)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)


def test_compile_nothing() -> None:
    assert compile_calendars([]) == {}


def test_a_shared_calendar_is_compiled_once() -> None:
    calendars = compiled(
        {"name": "base", "dates": ["2027-01-01"]},
        {"name": "a", "include": ["base"]},
        {"name": "b", "include": ["base"], "exclude": ["a"]},
    )
    assert calendars["a"].include[0] is calendars["base"]
    assert calendars["b"].include[0] is calendars["base"]
    assert calendars["b"].exclude[0] is calendars["a"]


# --- membership ---------------------------------------------------------------------------


def test_dates_are_whole_local_days(example: dict[str, Calendar]) -> None:
    holidays = example["holidays"]
    # 2027-12-24 00:00 in Berlin (CET, +01:00) is 2027-12-23 23:00 UTC.
    assert not holidays.contains(utc(2027, 12, 23, 22, 59, 59, 999_999))
    assert holidays.contains(utc(2027, 12, 23, 23))
    assert holidays.contains(utc(2027, 12, 25, 22, 59, 59))
    assert not holidays.contains(utc(2027, 12, 25, 23))
    assert not holidays.contains(utc(2027, 12, 26, 12))
    # The same instant written in another zone is the same instant.
    assert holidays.contains(local(NEW_YORK, 2027, 12, 23, 18))


def test_ranges_include_both_ends(example: dict[str, Calendar]) -> None:
    holidays = example["holidays"]
    assert holidays.contains(local(BERLIN, 2027, 12, 27, 0))
    assert holidays.contains(local(BERLIN, 2027, 12, 29, 12))
    assert holidays.contains(local(BERLIN, 2027, 12, 31, 23, 59, 59))
    assert not holidays.contains(local(BERLIN, 2028, 1, 1, 0))


def test_overlapping_and_touching_ranges() -> None:
    calendar = one(
        {
            "ranges": [
                {"from": "2027-01-10", "to": "2027-01-20"},
                {"from": "2027-01-01", "to": "2027-01-05"},
                {"from": "2027-01-03", "to": "2027-01-04"},
                {"from": "2027-01-06", "to": "2027-01-06"},
            ]
        }
    )
    inside = {date(2027, 1, day) for day in [1, 2, 3, 4, 5, 6, *range(10, 21)]}
    for day in (date(2026, 12, 31) + timedelta(days=step) for step in range(25)):
        noon = datetime.combine(day, time(12), UTC)
        assert calendar.contains(noon) == (day in inside), day


def test_weekly_windows_include_from_and_exclude_to(example: dict[str, Calendar]) -> None:
    business = example["business-hours"]
    # Wednesday 2027-06-16.
    assert not business.contains(local(NEW_YORK, 2027, 6, 16, 8, 59, 59, 999_999))
    assert business.contains(local(NEW_YORK, 2027, 6, 16, 9))
    assert business.contains(local(NEW_YORK, 2027, 6, 16, 17, 29, 59, 999_999))
    assert not business.contains(local(NEW_YORK, 2027, 6, 16, 17, 30))
    # Saturday 10:00-12:00 only.
    assert not business.contains(local(NEW_YORK, 2027, 6, 19, 9, 59))
    assert business.contains(local(NEW_YORK, 2027, 6, 19, 11, 59))
    assert not business.contains(local(NEW_YORK, 2027, 6, 19, 12))
    # Sunday: the whole day (00:00-24:00), and nothing of Monday before 09:00.
    assert business.contains(local(NEW_YORK, 2027, 6, 20, 0))
    assert business.contains(local(NEW_YORK, 2027, 6, 20, 23, 59, 59))
    assert not business.contains(local(NEW_YORK, 2027, 6, 21, 0))


def test_window_past_midnight_runs_into_the_next_day(example: dict[str, Calendar]) -> None:
    business = example["business-hours"]
    # Friday 2027-06-18 22:00 to Saturday 06:00.
    assert not business.contains(local(NEW_YORK, 2027, 6, 18, 21, 59, 59))
    assert business.contains(local(NEW_YORK, 2027, 6, 18, 22))
    assert business.contains(local(NEW_YORK, 2027, 6, 19, 0))
    assert business.contains(local(NEW_YORK, 2027, 6, 19, 5, 59, 59))
    assert not business.contains(local(NEW_YORK, 2027, 6, 19, 6))
    # Only from Friday: Thursday night is not in it.
    assert not business.contains(local(NEW_YORK, 2027, 6, 17, 23))
    assert not business.contains(local(NEW_YORK, 2027, 6, 18, 5))


def test_window_past_midnight_wraps_from_sunday_to_monday() -> None:
    calendar = one({"weekly": [{"days": "SUN", "from": "22:00", "to": "02:00"}]})
    assert calendar.contains(utc(2027, 6, 20, 23))  # Sunday
    assert calendar.contains(utc(2027, 6, 21, 1, 59))  # Monday
    assert not calendar.contains(utc(2027, 6, 21, 2))
    assert not calendar.contains(utc(2027, 6, 20, 1))  # Sunday morning


@pytest.mark.parametrize(
    ("window", "inside", "outside"),
    [
        # to 00:00 before from: until midnight, nothing the next day.
        ({"days": "MON", "from": "22:00", "to": "00:00"}, [(21, 22), (21, 23, 59)], [(22, 0)]),
        # to equal to from: 24 hours.
        ({"days": "MON", "from": "09:00", "to": "09:00"}, [(21, 9), (22, 8, 59)], [(22, 9)]),
        ({"days": "MON", "from": "00:00", "to": "00:00"}, [(21, 0), (21, 23, 59)], [(22, 0)]),
        ({"days": "MON", "from": "22:00", "to": "24:00"}, [(21, 22)], [(21, 21), (22, 0)]),
        (
            {"days": "MON", "from": "12:00:30", "to": "12:00:45"},
            [(21, 12, 0, 30), (21, 12, 0, 44)],
            [(21, 12, 0, 29), (21, 12, 0, 45)],
        ),
    ],
)
def test_window_edges(
    window: dict[str, str],
    inside: list[tuple[int, ...]],
    outside: list[tuple[int, ...]],
) -> None:
    calendar = one({"weekly": [window]})  # 2027-06-21 is a Monday
    for moment in inside:
        assert calendar.contains(utc(2027, 6, *moment)), moment
    for moment in outside:
        assert not calendar.contains(utc(2027, 6, *moment)), moment


def test_include_is_a_union_and_exclude_a_difference(example: dict[str, Calendar]) -> None:
    closed = example["closed"]
    business = example["business-hours"]
    assert closed.contains(utc(2027, 6, 19, 12))  # a Saturday (weekends, UTC)
    assert not closed.contains(utc(2027, 6, 18, 12))  # a Friday
    assert closed.contains(local(BERLIN, 2027, 12, 24, 10))  # a Friday, but a holiday
    # Business hours minus Berlin's holidays, which start at 18:00 in New York.
    assert business.contains(local(NEW_YORK, 2027, 12, 23, 10))  # a Thursday
    assert business.contains(local(NEW_YORK, 2027, 12, 23, 17, 29))  # 23:29 in Berlin
    assert not business.contains(local(NEW_YORK, 2027, 12, 24, 10))  # a Friday
    assert not business.contains(local(NEW_YORK, 2027, 12, 24, 23))  # the night window
    assert not business.contains(local(NEW_YORK, 2027, 12, 25, 11))  # Saturday 10-12
    # Sunday 12-26, the whole day in New York, until 12-27 starts in Berlin.
    assert business.contains(local(NEW_YORK, 2027, 12, 26, 0))
    assert business.contains(local(NEW_YORK, 2027, 12, 26, 17, 59, 59))
    assert not business.contains(local(NEW_YORK, 2027, 12, 26, 18))


def test_nested_include_and_exclude() -> None:
    calendars = compiled(
        {"name": "week", "weekly": [{"days": "MON-FRI", "from": "08:00", "to": "18:00"}]},
        {"name": "lunch", "weekly": [{"days": "MON-SUN", "from": "12:00", "to": "13:00"}]},
        {"name": "work", "include": ["week"], "exclude": ["lunch"]},
        {"name": "late", "weekly": [{"days": "FRI", "from": "20:00", "to": "22:00"}]},
        {"name": "friday-lunch", "weekly": [{"days": "FRI", "from": "12:00", "to": "12:30"}]},
        # (week - lunch) + late + friday-lunch.
        {"name": "open", "include": ["work", "late", "friday-lunch"]},
        {"name": "quiet", "weekly": [{"days": "MON-SUN"}], "exclude": ["open"]},
    )
    expected_open = {
        (16, 7, 59): False,
        (16, 8, 0): True,
        (16, 12, 0): False,
        (16, 12, 59): False,
        (16, 13, 0): True,
        (18, 12, 15): True,  # Friday lunch is back in
        (18, 12, 45): False,
        (18, 21, 0): True,
        (19, 12, 15): False,  # Saturday
    }
    for (day, hour, minute), expected in expected_open.items():
        instant = utc(2027, 6, day, hour, minute)
        assert calendars["open"].contains(instant) == expected, (day, hour, minute)
        assert calendars["quiet"].contains(instant) == (not expected), (day, hour, minute)


def test_zone_decides_the_local_day() -> None:
    calendars = compiled(
        {"name": "tokyo", "timezone": "Asia/Tokyo", "dates": ["2027-06-21"]},
        {"name": "honolulu", "timezone": "Pacific/Honolulu", "dates": ["2027-06-21"]},
        {"name": "utc", "dates": ["2027-06-21"]},
    )
    # 2027-06-20 20:00 UTC: Monday 05:00 in Tokyo, Sunday 10:00 in Honolulu.
    instant = utc(2027, 6, 20, 20)
    assert calendars["tokyo"].contains(instant)
    assert not calendars["honolulu"].contains(instant)
    assert not calendars["utc"].contains(instant)
    later = utc(2027, 6, 21, 12)  # Monday 21:00 in Tokyo, 02:00 in Honolulu
    assert calendars["tokyo"].contains(later)
    assert calendars["honolulu"].contains(later)
    assert calendars["utc"].contains(later)


def test_zone_decides_the_window() -> None:
    calendars = compiled(
        {
            "name": "ny",
            "timezone": "America/New_York",
            "weekly": [{"days": "MON-FRI", "from": "09:00", "to": "17:00"}],
        },
        {
            "name": "berlin",
            "timezone": "Europe/Berlin",
            "weekly": [{"days": "MON-FRI", "from": "09:00", "to": "17:00"}],
        },
    )
    morning_in_ny = utc(2027, 6, 16, 13, 30)  # 09:30 EDT, 15:30 CEST
    evening_in_berlin = utc(2027, 6, 16, 16, 30)  # 12:30 EDT, 18:30 CEST
    assert calendars["ny"].contains(morning_in_ny)
    assert calendars["berlin"].contains(morning_in_ny)
    assert calendars["ny"].contains(evening_in_berlin)
    assert not calendars["berlin"].contains(evening_in_berlin)


def test_naive_instants_are_refused(example: dict[str, Calendar]) -> None:
    gate = CalendarGate([example["holidays"]], [], defer=True)
    naive = datetime(2027, 12, 24, 10)
    with pytest.raises(ValueError, match="naive"):
        example["holidays"].contains(naive)
    with pytest.raises(ValueError, match="naive"):
        gate.blocker(naive)
    with pytest.raises(ValueError, match="naive"):
        gate.next_allowed(naive)


# --- DST -----------------------------------------------------------------------------------


def test_berlin_changes_are_where_these_tests_expect_them() -> None:
    assert offset_changes("Europe/Berlin", 2027) == (utc(2027, 3, 28, 1), utc(2027, 10, 31, 1))
    assert offset_changes("America/New_York", 2027) == (utc(2027, 3, 14, 7), utc(2027, 11, 7, 6))
    assert offset_changes("Australia/Lord_Howe", 2027) == (
        utc(2027, 4, 3, 15),
        utc(2027, 10, 2, 15, 30),
    )


def test_window_on_a_dst_change_day_is_open_on_local_time() -> None:
    berlin = one(
        {"timezone": "Europe/Berlin", "weekly": [{"days": "SUN", "from": "09:00", "to": "17:00"}]}
    )
    # Spring (2027-03-28, a Sunday): CEST, +02:00, from 03:00 local.
    assert not berlin.contains(utc(2027, 3, 28, 6, 59, 59))
    assert berlin.contains(utc(2027, 3, 28, 7))
    assert berlin.contains(utc(2027, 3, 28, 14, 59, 59))
    assert not berlin.contains(utc(2027, 3, 28, 15))
    # Autumn (2027-10-31, a Sunday): CET, +01:00, from 02:00 local (second pass).
    assert not berlin.contains(utc(2027, 10, 31, 7, 59, 59))
    assert berlin.contains(utc(2027, 10, 31, 8))
    assert not berlin.contains(utc(2027, 10, 31, 16))


def test_window_ending_in_the_spring_gap_ends_with_the_gap() -> None:
    # 02:00-03:00 does not exist in Berlin on 2027-03-28: 01:59:59 CET is followed by
    # 03:00:00 CEST (01:00 UTC), the first instant whose wall time is 02:30 or later.
    calendar = one(
        {"timezone": "Europe/Berlin", "weekly": [{"days": "SUN", "from": "01:00", "to": "02:30"}]}
    )
    assert calendar.contains(utc(2027, 3, 28, 0, 59, 59))
    assert not calendar.contains(utc(2027, 3, 28, 1))
    gate = CalendarGate([calendar], [], defer=True)
    assert gate.next_allowed(utc(2027, 3, 28, 0, 30)) == utc(2027, 3, 28, 1)
    # A window starting in the gap opens with it.
    starting = one(
        {"timezone": "Europe/Berlin", "weekly": [{"days": "SUN", "from": "02:30", "to": "05:00"}]}
    )
    assert not starting.contains(utc(2027, 3, 28, 0, 59, 59))
    assert starting.contains(utc(2027, 3, 28, 1))
    only = CalendarGate([], [starting], defer=True)
    assert only.next_allowed(utc(2027, 3, 27, 12)) == utc(2027, 3, 28, 1)


def test_window_inside_the_gap_never_opens_that_day() -> None:
    calendar = one(
        {"timezone": "Europe/Berlin", "weekly": [{"days": "SUN", "from": "02:10", "to": "02:50"}]}
    )
    gate = CalendarGate([], [calendar], defer=True)
    # Not on 2027-03-28: the next Sunday, 02:10 CEST.
    assert gate.next_allowed(utc(2027, 3, 27, 12)) == utc(2027, 4, 4, 0, 10)


def test_repeated_autumn_hour_is_in_the_calendar_twice() -> None:
    # 2027-10-31 in Berlin: 02:00-03:00 happens at 00:00-01:00 UTC (CEST) and again at
    # 01:00-02:00 UTC (CET).
    calendar = one(
        {"timezone": "Europe/Berlin", "weekly": [{"days": "SUN", "from": "02:30", "to": "02:45"}]}
    )
    assert calendar.contains(utc(2027, 10, 31, 0, 30))
    assert not calendar.contains(utc(2027, 10, 31, 0, 45))
    assert calendar.contains(utc(2027, 10, 31, 1, 30))
    assert not calendar.contains(utc(2027, 10, 31, 1, 45))
    only = CalendarGate([], [calendar], defer=True)
    assert only.next_allowed(utc(2027, 10, 31, 0, 50)) == utc(2027, 10, 31, 1, 30)
    excluded = CalendarGate([calendar], [], defer=True)
    assert excluded.next_allowed(utc(2027, 10, 31, 0, 31)) == utc(2027, 10, 31, 0, 45)
    assert excluded.next_allowed(utc(2027, 10, 31, 1, 31)) == utc(2027, 10, 31, 1, 45)


def test_window_ending_in_the_repeated_hour_ends_in_its_first_pass() -> None:
    # Until 02:30: the first pass reaches 02:30 at 00:30 UTC; the second pass's 02:00-02:30
    # is inside again (its wall time is before 02:30) and then ends at 01:30 UTC.
    calendar = one(
        {"timezone": "Europe/Berlin", "weekly": [{"days": "SUN", "from": "01:00", "to": "02:30"}]}
    )
    gate = CalendarGate([calendar], [], defer=True)
    assert gate.next_allowed(utc(2027, 10, 30, 23, 30)) == utc(2027, 10, 31, 0, 30)
    assert gate.blocker(utc(2027, 10, 31, 1, 15)) == "c"
    assert gate.next_allowed(utc(2027, 10, 31, 1, 15)) == utc(2027, 10, 31, 1, 30)


def test_new_york_dst_days() -> None:
    holiday = one({"timezone": "America/New_York", "dates": ["2027-03-14", "2027-11-07"]})
    gate = CalendarGate([holiday], [], defer=True)
    # The spring day is 23 hours long: from 05:00 UTC (EST) to 04:00 UTC the next day (EDT).
    assert not holiday.contains(utc(2027, 3, 14, 4, 59, 59))
    assert holiday.contains(utc(2027, 3, 14, 5))
    assert gate.next_allowed(utc(2027, 3, 14, 12)) == utc(2027, 3, 15, 4)
    # The autumn day is 25 hours long: from 04:00 UTC (EDT) to 05:00 UTC the next day (EST).
    assert holiday.contains(utc(2027, 11, 7, 4))
    assert holiday.contains(utc(2027, 11, 8, 4, 59, 59))
    assert gate.next_allowed(utc(2027, 11, 7, 4)) == utc(2027, 11, 8, 5)
    hours = one(
        {
            "timezone": "America/New_York",
            "weekly": [{"days": "SUN", "from": "01:30", "to": "02:30"}],
        }
    )
    # Spring: 02:00 EST jumps to 03:00 EDT at 07:00 UTC; 01:30 EST is 06:30 UTC.
    assert hours.contains(utc(2027, 3, 14, 6, 30))
    assert not hours.contains(utc(2027, 3, 14, 7))
    assert CalendarGate([hours], [], defer=True).next_allowed(utc(2027, 3, 14, 6, 45)) == utc(
        2027, 3, 14, 7
    )
    # Autumn: 01:30-02:00 EDT (05:30-06:00 UTC), then 02:00 EDT is 01:00 EST again, and
    # 01:30-02:30 EST is 06:30-07:30 UTC.
    assert not hours.contains(utc(2027, 11, 7, 5, 29, 59))
    assert hours.contains(utc(2027, 11, 7, 5, 30))
    assert not hours.contains(utc(2027, 11, 7, 6, 15))
    assert hours.contains(utc(2027, 11, 7, 6, 30))
    assert hours.contains(utc(2027, 11, 7, 7, 29, 59))
    assert not hours.contains(utc(2027, 11, 7, 7, 30))
    gate = CalendarGate([hours], [], defer=True)
    assert gate.next_allowed(utc(2027, 11, 7, 5, 30)) == utc(2027, 11, 7, 6)
    assert gate.next_allowed(utc(2027, 11, 7, 6, 30)) == utc(2027, 11, 7, 7, 30)


def test_lord_howe_half_hour_shifts() -> None:
    # Lord Howe is +10:30, and +11:00 in summer. 2027-10-03: 02:00 jumps to 02:30 at
    # 15:30 UTC; 2027-04-04: 02:00 goes back to 01:30 at 15:00 UTC.
    in_gap = one(
        {
            "timezone": "Australia/Lord_Howe",
            "weekly": [{"days": "SUN", "from": "02:10", "to": "02:20"}],
        }
    )
    only = CalendarGate([], [in_gap], defer=True)
    assert only.next_allowed(utc(2027, 10, 2, 12)) == utc(2027, 10, 9, 15, 10)  # next Sunday
    across = one(
        {
            "timezone": "Australia/Lord_Howe",
            "weekly": [{"days": "SUN", "from": "02:15", "to": "04:00"}],
        }
    )
    assert not across.contains(utc(2027, 10, 2, 15, 29, 59))  # 01:59:59 +10:30
    assert across.contains(utc(2027, 10, 2, 15, 30))  # 02:30 +11:00
    assert CalendarGate([], [across], defer=True).next_allowed(utc(2027, 10, 2, 12)) == utc(
        2027, 10, 2, 15, 30
    )
    # Autumn: 01:30-02:00 happens twice, at 14:30-15:00 and 15:00-15:30 UTC.
    repeated = one(
        {
            "timezone": "Australia/Lord_Howe",
            "weekly": [{"days": "SUN", "from": "01:40", "to": "01:50"}],
        }
    )
    assert repeated.contains(utc(2027, 4, 3, 14, 40))
    assert not repeated.contains(utc(2027, 4, 3, 14, 50))
    assert repeated.contains(utc(2027, 4, 3, 15, 10))
    assert CalendarGate([], [repeated], defer=True).next_allowed(utc(2027, 4, 3, 14, 50)) == utc(
        2027, 4, 3, 15, 10
    )
    day = one({"timezone": "Australia/Lord_Howe", "dates": ["2027-04-04"]})
    # 00:00 +11:00 to 24:00 +10:30: a day of 24 and a half hours.
    assert CalendarGate([day], [], defer=True).next_allowed(utc(2027, 4, 3, 14)) == utc(
        2027, 4, 4, 13, 30
    )
    assert day.contains(utc(2027, 4, 3, 13))
    assert not day.contains(utc(2027, 4, 3, 12, 59, 59))


# --- the gate ------------------------------------------------------------------------------


def test_blocker_names_the_first_excluding_calendar_then_the_first_only() -> None:
    calendars = compiled(
        {"name": "a", "dates": ["2027-06-16"]},
        {"name": "b", "dates": ["2027-06-16", "2027-06-17"]},
        {"name": "c", "dates": ["2027-06-18"]},
        {"name": "d", "dates": ["2027-06-19"]},
    )
    a, b, c, d = (calendars[name] for name in "abcd")
    gate = CalendarGate([a, b], [c, d], defer=False)
    assert gate.blocker(utc(2027, 6, 16, 12)) == "a"
    assert gate.blocker(utc(2027, 6, 17, 12)) == "b"
    assert gate.blocker(utc(2027, 6, 18, 12)) is None
    assert gate.blocker(utc(2027, 6, 19, 12)) is None
    assert gate.blocker(utc(2027, 6, 20, 12)) == "c"
    assert CalendarGate([b, a], [], defer=False).blocker(utc(2027, 6, 16, 12)) == "b"
    # An excluding calendar wins over an only calendar that contains the instant.
    assert CalendarGate([c], [c], defer=False).blocker(utc(2027, 6, 18, 12)) == "c"
    assert not gate.is_open
    assert not CalendarGate([], [c], defer=False).is_open
    assert not CalendarGate([c], [], defer=False).is_open


def test_open_gate_lets_everything_through() -> None:
    gate = CalendarGate([], [], defer=True)
    assert gate.is_open
    instant = local(BERLIN, 2027, 12, 24, 10)
    assert gate.blocker(instant) is None
    assert gate.next_allowed(instant) == instant
    verdict = gate.judge(instant, None)
    assert verdict == GateVerdict(utc(2027, 12, 24, 9), None)
    assert verdict.start_at is not None and verdict.start_at.tzinfo is UTC


def test_judge_not_blocked_runs_at_the_instant_in_utc(example: dict[str, Calendar]) -> None:
    gate = CalendarGate([example["holidays"]], [], defer=True)
    instant = local(NEW_YORK, 2027, 12, 22, 10)
    verdict = gate.judge(instant, instant + timedelta(hours=1))
    assert verdict == GateVerdict(utc(2027, 12, 22, 15), None)
    assert verdict.start_at is not None and verdict.start_at.tzinfo is UTC
    assert not verdict.skipped
    assert not verdict.deferred


def test_judge_blocked_without_defer_skips(example: dict[str, Calendar]) -> None:
    gate = CalendarGate([example["holidays"]], [], defer=False)
    verdict = gate.judge(local(BERLIN, 2027, 12, 24, 9), local(BERLIN, 2027, 12, 24, 10))
    assert verdict == GateVerdict(None, "calendar:holidays")
    assert verdict.skipped
    assert not verdict.deferred
    only = CalendarGate([], [example["business-hours"]], defer=False)
    assert only.judge(local(NEW_YORK, 2027, 6, 16, 8), None).reason == "calendar:business-hours"


def test_judge_defers_to_the_next_allowed_instant(example: dict[str, Calendar]) -> None:
    gate = CalendarGate([example["holidays"]], [], defer=True)
    instant = local(BERLIN, 2027, 12, 24, 9)
    verdict = gate.judge(instant, None)
    assert verdict == GateVerdict(
        local(BERLIN, 2027, 12, 26, 0),
        "calendar:holidays: deferred from 2027-12-24T08:00:00Z",
    )
    assert verdict.start_at is not None and verdict.start_at.tzinfo is UTC
    assert verdict.deferred
    assert not verdict.skipped
    # A following occurrence after the deferred instant does not coalesce.
    later = gate.judge(instant, local(BERLIN, 2027, 12, 26, 0, 0, 1))
    assert later.start_at == local(BERLIN, 2027, 12, 26, 0)
    # One at or before it does.
    assert gate.judge(instant, local(BERLIN, 2027, 12, 26, 0)) == GateVerdict(
        None, "calendar:holidays (deferred into a later occurrence)"
    )


def test_judge_defer_with_nowhere_to_go() -> None:
    always = compiled({"name": "always", "weekly": [{"days": "MON-SUN"}]})["always"]
    gate = CalendarGate([always], [], defer=True)
    verdict = gate.judge(utc(2027, 6, 16, 12), utc(2027, 6, 16, 13))
    assert verdict == GateVerdict(
        None, "calendar:always (no allowed time within 2 years to defer to)"
    )
    assert verdict.skipped


def _judge_all(
    gate: CalendarGate, expression: str, start: datetime, end: datetime
) -> list[tuple[datetime, GateVerdict]]:
    """Every occurrence of ``expression`` in ``(start, end]`` with its verdict, as the
    scheduler would ask for them."""
    schedule = parse_schedule(expression)
    judged = []
    instant = schedule.next_after(start)
    while instant is not None and instant <= end:
        following = schedule.next_after(instant)
        judged.append((instant, gate.judge(instant, following)))
        instant = following
    return judged


def test_hourly_job_on_a_holiday_coalesces_into_the_next_day_occurrence() -> None:
    holiday = one({"dates": ["2027-12-24"]})
    gate = CalendarGate([holiday], [], defer=True)
    judged = _judge_all(gate, "0 * * * *", utc(2027, 12, 23, 23), utc(2027, 12, 25, 1))
    verdicts = [verdict for _, verdict in judged]
    # 2027-12-24 00:00 ... 23:00: each's following occurrence is no later than 12-25 00:00.
    assert [instant for instant, _ in judged[:24]] == [utc(2027, 12, 24, h) for h in range(24)]
    assert (
        verdicts[:24] == [GateVerdict(None, "calendar:c (deferred into a later occurrence)")] * 24
    )
    assert verdicts[24:] == [
        GateVerdict(utc(2027, 12, 25, 0), None),
        GateVerdict(utc(2027, 12, 25, 1), None),
    ]


def test_half_past_job_on_a_holiday_defers_its_last_occurrence() -> None:
    holiday = one({"dates": ["2027-12-24"]})
    gate = CalendarGate([holiday], [], defer=True)
    judged = _judge_all(gate, "30 * * * *", utc(2027, 12, 24, 0), utc(2027, 12, 25, 1))
    verdicts = [verdict for _, verdict in judged]
    assert len(verdicts) == 25
    coalesced = GateVerdict(None, "calendar:c (deferred into a later occurrence)")
    assert verdicts[:23] == [coalesced] * 23
    assert verdicts[23] == GateVerdict(
        utc(2027, 12, 25, 0), "calendar:c: deferred from 2027-12-24T23:30:00Z"
    )
    assert verdicts[24] == GateVerdict(utc(2027, 12, 25, 0, 30), None)
    # Without defer, all 24 are plain skips.
    plain = CalendarGate([holiday], [], defer=False)
    skipped = _judge_all(plain, "30 * * * *", utc(2027, 12, 24, 0), utc(2027, 12, 24, 23, 59))
    assert [verdict for _, verdict in skipped] == [GateVerdict(None, "calendar:c")] * 24


def test_only_business_hours_defers_night_runs_to_the_morning(
    example: dict[str, Calendar],
) -> None:
    gate = CalendarGate([], [example["business-hours"]], defer=True)
    # A daily 03:00 UTC job (Wednesday 23:00 EDT) runs at 09:00 EDT Thursday.
    judged = _judge_all(gate, "0 3 * * *", utc(2027, 6, 16, 12), utc(2027, 6, 17, 12))
    assert judged == [
        (
            utc(2027, 6, 17, 3),
            GateVerdict(
                utc(2027, 6, 17, 13), "calendar:business-hours: deferred from 2027-06-17T03:00:00Z"
            ),
        )
    ]


# --- next_allowed --------------------------------------------------------------------------


def test_next_allowed_returns_an_allowed_instant_itself() -> None:
    holiday = one({"dates": ["2027-12-24"]})
    gate = CalendarGate([holiday], [], defer=True)
    instant = local(BERLIN, 2027, 12, 23, 12, 0, 0, 250_000)
    assert gate.next_allowed(instant) == instant
    found = gate.next_allowed(instant)
    assert found is not None and found.tzinfo is UTC


def test_next_allowed_is_a_whole_second_even_from_a_fraction() -> None:
    calendar = one({"weekly": [{"days": "MON-SUN", "from": "10:00:00", "to": "10:00:07"}]})
    gate = CalendarGate([calendar], [], defer=True)
    assert gate.next_allowed(utc(2027, 6, 16, 10, 0, 3, 500_000)) == utc(2027, 6, 16, 10, 0, 7)


def test_next_allowed_respects_within() -> None:
    closure = one({"ranges": [{"from": "2027-08-01", "to": "2027-08-10"}]})
    gate = CalendarGate([closure], [], defer=True)
    start = utc(2027, 8, 1, 12)
    assert gate.next_allowed(start, within=timedelta(days=5)) is None
    assert gate.next_allowed(start, within=timedelta(days=9, hours=12)) == utc(2027, 8, 11)
    assert gate.next_allowed(start, within=timedelta(days=9, hours=11, seconds=3599)) is None
    assert gate.next_allowed(start) == utc(2027, 8, 11)


def test_next_allowed_gives_up_quickly_when_nothing_is_allowed() -> None:
    calendars = compiled(
        {"name": "always", "timezone": "Europe/Berlin", "weekly": [{"days": "MON-SUN"}]},
        {
            "name": "busy",
            "timezone": "Australia/Lord_Howe",
            "weekly": [
                {"days": "MON-FRI", "from": "09:00", "to": "17:00"},
                {"days": "SAT", "from": "22:00", "to": "03:00"},
            ],
        },
        {"name": "never", "timezone": "America/New_York", "dates": ["2020-01-01"]},
    )
    gate = CalendarGate([calendars["always"]], [calendars["busy"], calendars["never"]], True)
    began = stopwatch.perf_counter()
    assert gate.next_allowed(utc(2027, 6, 16, 12)) is None
    assert stopwatch.perf_counter() - began < 1.0
    # The only calendars alone do have room: the next Lord Howe weekday at 09:00.
    assert CalendarGate([], [calendars["busy"]], True).next_allowed(utc(2027, 6, 19, 0)) == (
        local(ZoneInfo("Australia/Lord_Howe"), 2027, 6, 19, 22)
    )


def test_next_allowed_far_from_an_answer_finds_it() -> None:
    calendars = compiled(
        {"name": "feb29", "dates": ["2028-02-29"]},
        {"name": "not-feb29", "weekly": [{"days": "MON-SUN"}], "exclude": ["feb29"]},
    )
    gate = CalendarGate([calendars["not-feb29"]], [], defer=True)
    assert gate.next_allowed(utc(2026, 6, 1)) == utc(2028, 2, 29)
    assert gate.next_allowed(utc(2026, 1, 1)) is None  # more than 732 days ahead
