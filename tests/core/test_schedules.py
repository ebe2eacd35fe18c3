"""Schedules by example: syntax, errors and the DST rules of DESIGN.md guarantee 6."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from belfry.core.schedules import (
    CronSchedule,
    IntervalSchedule,
    OneOffSchedule,
    RepeatingSchedule,
    ScheduleError,
    describe,
    format_instant,
    next_instants,
    parse_schedule,
    parse_timezone,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")


def utc(*args: int) -> datetime:
    return datetime(*args).replace(tzinfo=UTC)  # type: ignore[arg-type]


def between(expression: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    """Every instant in ``(start, end]``, checking they strictly increase."""
    schedule = parse_schedule(expression, zone)
    instants: list[datetime] = []
    cursor = start
    while (upcoming := schedule.next_after(cursor)) is not None and upcoming <= end:
        assert upcoming > cursor
        assert upcoming.tzinfo is UTC
        instants.append(upcoming)
        cursor = upcoming
    return instants


def walls(instants: list[datetime], zone: ZoneInfo) -> list[str]:
    return [instant.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S%z") for instant in instants]


# --- syntax -------------------------------------------------------------------------------


def test_five_field_cron_in_utc() -> None:
    schedule = parse_schedule("30 2 * * *")
    assert isinstance(schedule, CronSchedule)
    assert next_instants(schedule, utc(2027, 1, 1), 3) == [
        utc(2027, 1, 1, 2, 30),
        utc(2027, 1, 2, 2, 30),
        utc(2027, 1, 3, 2, 30),
    ]


def test_next_after_is_strictly_after() -> None:
    schedule = parse_schedule("30 2 * * *")
    assert schedule.next_after(utc(2027, 1, 1, 2, 30)) == utc(2027, 1, 2, 2, 30)
    assert schedule.next_after(utc(2027, 1, 1, 2, 29, 59, 999999)) == utc(2027, 1, 1, 2, 30)
    assert schedule.next_after(utc(2027, 1, 1, 2, 30, 0, 1)) == utc(2027, 1, 2, 2, 30)


def test_next_after_accepts_any_aware_instant_and_rejects_naive() -> None:
    schedule = parse_schedule("0 * * * *")
    assert schedule.next_after(datetime(2027, 1, 1, 10, 30, tzinfo=BERLIN)) == utc(2027, 1, 1, 10)
    with pytest.raises(ValueError, match="naive"):
        schedule.next_after(datetime(2027, 1, 1))


def test_six_field_cron_has_seconds_first() -> None:
    schedule = parse_schedule("15 30 2 * * *")
    assert next_instants(schedule, utc(2027, 1, 1), 2) == [
        utc(2027, 1, 1, 2, 30, 15),
        utc(2027, 1, 2, 2, 30, 15),
    ]
    every_ten = parse_schedule("*/10 * * * * *")
    assert next_instants(every_ten, utc(2027, 1, 1, 0, 0, 5), 3) == [
        utc(2027, 1, 1, 0, 0, 10),
        utc(2027, 1, 1, 0, 0, 20),
        utc(2027, 1, 1, 0, 0, 30),
    ]


def test_month_and_day_names() -> None:
    schedule = parse_schedule("0 9 * jan,JUL mon-fri")
    instants = next_instants(schedule, utc(2027, 6, 1), 40)
    assert all(i.month in (1, 7) and i.weekday() < 5 and i.hour == 9 for i in instants)
    assert instants[0] == utc(2027, 7, 1, 9)  # a Thursday
    assert parse_schedule("0 0 * * SUN").next_after(utc(2027, 1, 1)) == utc(2027, 1, 3)
    assert parse_schedule("0 0 * * 7").next_after(utc(2027, 1, 1)) == utc(2027, 1, 3)


def test_last_day_and_nth_weekday() -> None:
    assert parse_schedule("0 0 L 2 *").next_after(utc(2028, 1, 1)) == utc(2028, 2, 29)
    assert parse_schedule("0 0 * * MON#2").next_after(utc(2027, 1, 1)) == utc(2027, 1, 11)
    assert parse_schedule("0 0 * * 5L").next_after(utc(2027, 1, 1)) == utc(2027, 1, 29)
    assert parse_schedule("0 0 LW * *").next_after(utc(2027, 7, 1)) == utc(2027, 7, 30)


def test_day_of_month_and_day_of_week_are_or_ed_when_both_restricted() -> None:
    # Debian cron: both fields restricted -> either may match.
    instants = next_instants(parse_schedule("0 0 13 * FRI"), utc(2026, 12, 31, 12), 5)
    assert instants == [
        utc(2027, 1, 1),  # Friday
        utc(2027, 1, 8),  # Friday
        utc(2027, 1, 13),  # the 13th, a Wednesday
        utc(2027, 1, 15),
        utc(2027, 1, 22),
    ]


@pytest.mark.parametrize(
    ("alias", "first", "second"),
    [
        ("@hourly", utc(2027, 1, 1, 1), utc(2027, 1, 1, 2)),
        ("@daily", utc(2027, 1, 2), utc(2027, 1, 3)),
        ("@midnight", utc(2027, 1, 2), utc(2027, 1, 3)),
        ("@weekly", utc(2027, 1, 3), utc(2027, 1, 10)),
        ("@monthly", utc(2027, 2, 1), utc(2027, 3, 1)),
        ("@yearly", utc(2028, 1, 1), utc(2029, 1, 1)),
        ("@annually", utc(2028, 1, 1), utc(2029, 1, 1)),
        ("@HOURLY", utc(2027, 1, 1, 1), utc(2027, 1, 1, 2)),
    ],
)
def test_aliases(alias: str, first: datetime, second: datetime) -> None:
    assert next_instants(parse_schedule(alias), utc(2027, 1, 1, 0, 0, 1), 2) == [first, second]


def test_reboot_is_rejected_with_an_explanation() -> None:
    with pytest.raises(ScheduleError, match=r"@reboot is not supported.*time, not host boots"):
        parse_schedule("@reboot")


def test_every_is_aligned_to_the_epoch() -> None:
    schedule = parse_schedule("every 90s")
    assert isinstance(schedule, IntervalSchedule)
    assert schedule.interval == timedelta(seconds=90)
    instants = next_instants(schedule, utc(2027, 1, 1, 0, 0, 1), 3)
    assert instants == [utc(2027, 1, 1, 0, 1, 30), utc(2027, 1, 1, 0, 3), utc(2027, 1, 1, 0, 4, 30)]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert all((i - epoch) % timedelta(seconds=90) == timedelta() for i in instants)


def test_every_with_compound_duration() -> None:
    schedule = parse_schedule("every 1h30m", "Europe/Berlin")
    assert isinstance(schedule, IntervalSchedule)
    assert schedule.interval == timedelta(minutes=90)
    assert schedule.next_after(utc(2027, 1, 1)) == utc(2027, 1, 1, 1, 30)
    # Intervals count real time: a DST change does not disturb them.
    instants = next_instants(schedule, utc(2026, 3, 28, 23), 4)
    assert [b - a for a, b in pairwise(instants)] == [timedelta(minutes=90)] * 3


def test_aws_rate() -> None:
    for text, interval in [
        ("rate(5 minutes)", timedelta(minutes=5)),
        ("rate(1 minute)", timedelta(minutes=1)),
        ("rate(2 hours)", timedelta(hours=2)),
        ("rate(1 day)", timedelta(days=1)),
        ("RATE( 7 Days )", timedelta(days=7)),
    ]:
        schedule = parse_schedule(text)
        assert isinstance(schedule, IntervalSchedule)
        assert schedule.interval == interval
    assert parse_schedule("rate(5 minutes)").next_after(utc(2027, 1, 1, 0, 7)) == utc(
        2027, 1, 1, 0, 10
    )


def test_one_off() -> None:
    schedule = parse_schedule("at 2027-01-01T10:00:00Z")
    assert isinstance(schedule, OneOffSchedule)
    assert schedule.next_after(utc(2026, 1, 1)) == utc(2027, 1, 1, 10)
    assert schedule.next_after(utc(2027, 1, 1, 10)) is None
    assert next_instants(schedule, utc(2026, 1, 1), 5) == [utc(2027, 1, 1, 10)]
    # Short forms, explicit offsets, and wall-clock times of the job's zone.
    assert parse_schedule("at 2026-12-01T10:00Z").next_after(utc(2026, 1, 1)) == utc(
        2026, 12, 1, 10
    )
    assert parse_schedule("at 2027-01-01T10:00:00+01:00").next_after(utc(2026, 1, 1)) == utc(
        2027, 1, 1, 9
    )
    assert parse_schedule("at 2027-07-01T10:00:00", "Europe/Berlin").next_after(
        utc(2026, 1, 1)
    ) == utc(2027, 7, 1, 8)


def test_iso_repeating_interval() -> None:
    forever = parse_schedule("R/2027-01-01T00:00:00Z/PT1H")
    assert isinstance(forever, RepeatingSchedule)
    assert next_instants(forever, utc(2026, 1, 1), 3) == [
        utc(2027, 1, 1, 0),
        utc(2027, 1, 1, 1),
        utc(2027, 1, 1, 2),
    ]
    assert forever.next_after(utc(2030, 1, 1, 0, 30)) == utc(2030, 1, 1, 1)
    three = parse_schedule("R3/2027-01-01T00:00:00Z/P1DT12H")
    assert next_instants(three, utc(2026, 1, 1), 10) == [
        utc(2027, 1, 1),
        utc(2027, 1, 2, 12),
        utc(2027, 1, 4),
    ]
    assert three.next_after(utc(2027, 1, 4)) is None
    assert parse_schedule("R/2027-01-01T00:00:00Z/P1W").next_after(utc(2027, 1, 1)) == utc(
        2027, 1, 8
    )


def test_whitespace_is_normalised() -> None:
    schedule = parse_schedule("  30   2 *  * *  ")
    assert schedule.expression == "30 2 * * *"
    assert schedule.next_after(utc(2027, 1, 1)) == utc(2027, 1, 1, 2, 30)


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "empty schedule"),
        ("   ", "empty schedule"),
        ("* * *", "cron needs 5 fields .6 with seconds first., got 3"),
        ("0 0 0 * * * 2027", "got 7"),
        ("61 * * * *", r"bad minute field '61' \(allowed: 0-59\)"),
        ("0 24 * * *", r"bad hour field '24' \(allowed: 0-23\)"),
        ("0 0 32 * *", "bad day-of-month field '32'"),
        ("0 0 0 * *", "bad day-of-month field '0'"),
        ("0 0 * 13 *", "bad month field '13'"),
        ("0 0 * * 8", "bad day-of-week field '8'"),
        ("60 0 0 * * *", "bad second field '60'"),
        ("0 0 * FOO *", "bad month field 'FOO'"),
        ("5-1 * * * *", "bad minute field '5-1'"),
        ("*/0 * * * *", "bad minute field"),
        ("0 0 ? * *", "'\\?' is Quartz syntax, use '\\*'"),
        ("0 0 W * *", "bad day-of-month field 'W' .allowed: 1-31, L, LW, or nW"),
        ("0 0 31 2 *", "day-of-month '31' never occurs in month '2'"),
        ("@fortnightly", "unknown schedule alias '@fortnightly' .known: @annually"),
        ("every", "cron needs 5 fields"),
        ("every 0s", "must be positive"),
        ("every 500ms", "use whole seconds, at least 1s"),
        ("every 1.5s", "use whole seconds"),
        ("every soon", "not a duration"),
        ("every 99999999999999d", "too long"),
        ("rate(5 fortnights)", "unknown unit 'fortnights'"),
        ("rate(five minutes)", r"write rate\(<number> <unit>\)"),
        ("rate(0 minutes)", "must be positive"),
        ("at tomorrow", "invalid instant in 'at tomorrow'.*2027-01-01T10:00:00Z"),
        ("at 2027-13-01T00:00:00Z", "invalid instant"),
        ("R0/2027-01-01T00:00:00Z/PT1H", "R0 never runs"),
        ("R/2027-01-01T00:00:00Z/P1M", "years and months are not exact durations"),
        ("R/2027-01-01T00:00:00Z/PT", "invalid duration 'PT'"),
        ("R/2027-01-01T00:00:00Z/PT0S", "at least PT1S"),
        ("R/2027-01-01T00:00:00Z", r"R\[n\]/<start>/<duration>"),
        ("R/yesterday/PT1H", "invalid instant"),
    ],
)
def test_invalid_schedules_raise_helpful_errors(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        parse_schedule(expression)


def test_schedule_error_is_a_value_error() -> None:
    # pydantic turns ValueErrors into field errors: JobSpec relies on it.
    assert issubclass(ScheduleError, ValueError)


@pytest.mark.parametrize(
    ("zone", "message"),
    [
        ("Mars/Olympus_Mons", "unknown time zone 'Mars/Olympus_Mons'"),
        ("", "unknown time zone ''"),
        ("Europe", "unknown time zone 'Europe'"),  # a directory of tzdata
        ("europe/berlin", "did you mean Europe/Berlin"),
        ("Europe/Berln", "did you mean Europe/Berlin"),
        ("utc", "did you mean UTC"),
        ("/etc/passwd", "unknown time zone"),
        ("../../etc/passwd", "unknown time zone"),
        ("a" * 300, "unknown time zone"),
        ("Europe/Berlin\x00", "unknown time zone"),
        ("localtime", "unknown time zone"),  # the host's zone, not an IANA name
    ],
)
def test_unknown_zones(zone: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        parse_timezone(zone)
    with pytest.raises(ScheduleError, match=message):
        parse_schedule("0 0 * * *", zone)


def test_known_zones() -> None:
    for name in ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Etc/GMT+5"]:
        assert parse_timezone(name).key == name


# --- descriptions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "zone", "words"),
    [
        ("30 2 * * *", "UTC", "At 02:30 every day (UTC)"),
        ("30 2 * * *", "Europe/Berlin", "At 02:30 every day (Europe/Berlin)"),
        ("*/15 * * * *", "UTC", "Every 15 minutes (UTC)"),
        ("*/7 * * * *", "UTC", "Every seventh minute of every hour (UTC)"),
        ("*/10 * * * * *", "UTC", "Every 10 seconds (UTC)"),
        ("0 */5 * * * *", "UTC", "Every 5 minutes (UTC)"),
        ("0 * * * * *", "UTC", "Every minute (UTC)"),
        ("@hourly", "UTC", "At the start of every hour (UTC)"),
        ("every 90s", "UTC", "Every 90 seconds"),
        ("every 1m", "UTC", "Every minute"),
        ("every 1h30m", "UTC", "Every 90 minutes"),
        ("every 2h", "Europe/Berlin", "Every 2 hours"),
        ("every 1d", "UTC", "Every day"),
        ("every 14d", "UTC", "Every 2 weeks"),
        ("rate(5 minutes)", "UTC", "Every 5 minutes"),
        ("at 2027-01-01T10:00:00Z", "Europe/Berlin", "Once, at 2027-01-01T10:00:00Z"),
        ("R/2027-01-01T00:00:00Z/PT1H", "UTC", "Every hour from 2027-01-01T00:00:00Z"),
        ("R1/2027-01-01T00:00:00Z/PT1H", "UTC", "Every hour from 2027-01-01T00:00:00Z, once"),
        ("R3/2027-01-01T00:00:00Z/PT1H", "UTC", "Every hour from 2027-01-01T00:00:00Z, 3 times"),
    ],
)
def test_describe(expression: str, zone: str, words: str) -> None:
    assert describe(parse_schedule(expression, zone)) == words


def test_format_instant() -> None:
    assert format_instant(datetime(2027, 1, 1, 11, tzinfo=BERLIN)) == "2027-01-01T10:00:00Z"


# --- DST: Debian cron's rules (DESIGN.md guarantee 6) ---------------------------------------


def test_berlin_spring_forward_fixed_time_runs_right_after_the_gap() -> None:
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    instants = between("30 2 * * *", "Europe/Berlin", utc(2026, 3, 27), utc(2026, 3, 31))
    assert walls(instants, BERLIN) == [
        "2026-03-27 02:30:00+0100",
        "2026-03-28 02:30:00+0100",
        "2026-03-29 03:00:00+0200",  # right after the gap
        "2026-03-30 02:30:00+0200",
    ]


def test_berlin_autumn_fixed_time_runs_once_in_the_repeated_hour() -> None:
    # 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    instants = between("30 2 * * *", "Europe/Berlin", utc(2026, 10, 23), utc(2026, 10, 27))
    assert walls(instants, BERLIN) == [
        "2026-10-23 02:30:00+0200",
        "2026-10-24 02:30:00+0200",
        "2026-10-25 02:30:00+0200",  # the first pass only
        "2026-10-26 02:30:00+0100",
    ]


def test_fixed_time_asked_from_inside_the_second_pass_does_not_run_again() -> None:
    schedule = parse_schedule("30 2 * * *", "Europe/Berlin")
    second_pass = datetime(2026, 10, 25, 2, 10, fold=1, tzinfo=BERLIN)
    assert schedule.next_after(second_pass) == datetime(2026, 10, 26, 2, 30, tzinfo=BERLIN)
    first_pass = datetime(2026, 10, 25, 2, 10, fold=0, tzinfo=BERLIN)
    assert schedule.next_after(first_pass) == utc(2026, 10, 25, 0, 30)


def test_several_fixed_times_in_a_gap_merge_into_one_run() -> None:
    instants = between("0,30 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 12), utc(2026, 3, 29, 12))
    assert walls(instants, BERLIN) == ["2026-03-29 03:00:00+0200"]
    instants = between("30 1-3 * * *", "Europe/Berlin", utc(2026, 3, 28, 12), utc(2026, 3, 29, 12))
    assert walls(instants, BERLIN) == [
        "2026-03-29 01:30:00+0100",
        "2026-03-29 03:00:00+0200",  # 02:30, moved out of the gap
        "2026-03-29 03:30:00+0200",
    ]
    instants = between(
        "30 1-3 * * *", "Europe/Berlin", utc(2026, 10, 24, 12), utc(2026, 10, 25, 12)
    )
    assert walls(instants, BERLIN) == [
        "2026-10-25 01:30:00+0200",
        "2026-10-25 02:30:00+0200",
        "2026-10-25 03:30:00+0100",
    ]


def test_berlin_every_15_minutes_counts_both_passes_and_skips_the_gap() -> None:
    # Autumn: the wall hour 02:00-02:59 happens twice -> 4 + 4 = 8 runs, 25 hours -> 100.
    day = between(
        "*/15 * * * *", "Europe/Berlin", utc(2026, 10, 24, 21, 59), utc(2026, 10, 25, 22, 59)
    )
    assert len(day) == 100
    assert all(b - a == timedelta(minutes=15) for a, b in pairwise(day))
    in_hour_two = [i for i in day if i.astimezone(BERLIN).hour == 2]
    assert walls(in_hour_two, BERLIN) == [
        "2026-10-25 02:00:00+0200",
        "2026-10-25 02:15:00+0200",
        "2026-10-25 02:30:00+0200",
        "2026-10-25 02:45:00+0200",
        "2026-10-25 02:00:00+0100",
        "2026-10-25 02:15:00+0100",
        "2026-10-25 02:30:00+0100",
        "2026-10-25 02:45:00+0100",
    ]
    # Spring: 23 hours -> 92 runs, none at a wall time of the gap.
    day = between(
        "*/15 * * * *", "Europe/Berlin", utc(2026, 3, 28, 22, 59), utc(2026, 3, 29, 21, 59)
    )
    assert len(day) == 92
    assert all(b - a == timedelta(minutes=15) for a, b in pairwise(day))
    assert not [i for i in day if i.astimezone(BERLIN).hour == 2]
    assert walls(day[6:9], BERLIN) == [
        "2026-03-29 01:30:00+0100",
        "2026-03-29 01:45:00+0100",
        "2026-03-29 03:00:00+0200",
    ]


def test_wildcard_hour_jobs_follow_real_instants() -> None:
    # "0 */2": 02:00 is a wildcard-job time -> skipped in spring, twice in autumn.
    spring = between(
        "0 */2 * * *", "Europe/Berlin", utc(2026, 3, 28, 22, 59), utc(2026, 3, 29, 21, 59)
    )
    assert [i.astimezone(BERLIN).hour for i in spring] == [0, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22]
    autumn = between(
        "0 */2 * * *", "Europe/Berlin", utc(2026, 10, 24, 21, 59), utc(2026, 10, 25, 22, 59)
    )
    assert walls(autumn[:3], BERLIN) == [
        "2026-10-25 00:00:00+0200",
        "2026-10-25 02:00:00+0200",
        "2026-10-25 02:00:00+0100",
    ]
    # A wildcard minute in a fixed hour is a wildcard job too (Debian): no run in the gap.
    assert (
        between("*/20 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 12), utc(2026, 3, 29, 12)) == []
    )
    autumn = between("*/20 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 12), utc(2026, 10, 25, 12))
    assert len(autumn) == 6


def test_new_york_transitions() -> None:
    # 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST.
    spring = between("30 2 * * *", "America/New_York", utc(2026, 3, 7), utc(2026, 3, 10))
    assert walls(spring, NEW_YORK) == [
        "2026-03-07 02:30:00-0500",
        "2026-03-08 03:00:00-0400",
        "2026-03-09 02:30:00-0400",
    ]
    autumn = between("30 1 * * *", "America/New_York", utc(2026, 10, 31), utc(2026, 11, 3))
    assert walls(autumn, NEW_YORK) == [
        "2026-10-31 01:30:00-0400",
        "2026-11-01 01:30:00-0400",
        "2026-11-02 01:30:00-0500",
    ]
    every = between("*/15 * * * *", "America/New_York", utc(2026, 11, 1, 4), utc(2026, 11, 1, 8))
    assert len(every) == 16
    assert sum(1 for i in every if i.astimezone(NEW_YORK).hour == 1) == 8
    every = between("*/15 * * * *", "America/New_York", utc(2026, 3, 8, 5), utc(2026, 3, 8, 9))
    assert len(every) == 16
    assert not [i for i in every if i.astimezone(NEW_YORK).hour == 2]


def test_lord_howe_half_hour_shift() -> None:
    # 2026-04-05 02:00 +11 -> 01:30 +10:30; 2026-10-04 02:00 +10:30 -> 02:30 +11.
    autumn = between(
        "*/10 * * * *", "Australia/Lord_Howe", utc(2026, 4, 4, 14), utc(2026, 4, 4, 16)
    )
    assert len(autumn) == 12
    assert all(b - a == timedelta(minutes=10) for a, b in pairwise(autumn))
    assert sum(1 for i in autumn if i.astimezone(LORD_HOWE).strftime("%H:%M") == "01:40") == 2
    spring = between("15 2 * * *", "Australia/Lord_Howe", utc(2026, 10, 2), utc(2026, 10, 5))
    assert walls(spring, LORD_HOWE) == [
        "2026-10-03 02:15:00+1030",
        "2026-10-04 02:30:00+1100",  # right after the 30-minute gap
        "2026-10-05 02:15:00+1100",
    ]
    once = between("45 1 * * *", "Australia/Lord_Howe", utc(2026, 4, 3), utc(2026, 4, 6))
    assert walls(once, LORD_HOWE) == [
        "2026-04-04 01:45:00+1100",
        "2026-04-05 01:45:00+1100",
        "2026-04-06 01:45:00+1030",
    ]


def test_six_field_expressions_in_a_dst_zone() -> None:
    # Every 20 seconds: both passes of the repeated hour, nothing in the gap.
    autumn = between(
        "*/20 * * * * *", "Europe/Berlin", utc(2026, 10, 24, 23, 59), utc(2026, 10, 25, 2, 1)
    )
    assert len(autumn) == 122 * 3  # 2 h 2 min of real time
    assert sum(1 for i in autumn if i.astimezone(BERLIN).hour == 2) == 2 * 60 * 3
    assert all(b - a == timedelta(seconds=20) for a, b in pairwise(autumn))
    spring = between(
        "*/20 * * * * *", "Europe/Berlin", utc(2026, 3, 29, 0, 59), utc(2026, 3, 29, 1, 1)
    )
    assert all(b - a == timedelta(seconds=20) for a, b in pairwise(spring))
    assert not [i for i in spring if i.astimezone(BERLIN).hour == 2]
    # A fixed time with seconds follows the fixed-time rule too.
    daily = between("10 30 2 * * *", "Europe/Berlin", utc(2026, 3, 28), utc(2026, 3, 30))
    assert walls(daily, BERLIN) == ["2026-03-28 02:30:10+0100", "2026-03-29 03:00:00+0200"]
    daily = between("10 30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 12), utc(2026, 10, 25, 12))
    assert walls(daily, BERLIN) == ["2026-10-25 02:30:10+0200"]


def test_sao_paulo_midnight_gap() -> None:
    # 2018-11-04 00:00 -03 -> 01:00 -02: midnight did not exist.
    instants = between("0 0 * * *", "America/Sao_Paulo", utc(2018, 11, 3), utc(2018, 11, 6))
    assert walls(instants, ZoneInfo("America/Sao_Paulo")) == [
        "2018-11-03 00:00:00-0300",
        "2018-11-04 01:00:00-0200",
        "2018-11-05 00:00:00-0200",
    ]


def test_schedules_that_end() -> None:
    # cronsim gives up after 50 years without a match; so does the schedule, quietly.
    schedule = parse_schedule("0 0 29 2 *")
    assert schedule.next_after(utc(2027, 1, 1)) == utc(2028, 2, 29)
    assert parse_schedule("0 0 * * *").next_after(datetime.max.replace(tzinfo=UTC)) is None
    assert (
        parse_schedule("0 0 * * *", "Europe/Berlin").next_after(
            datetime(9999, 12, 31, 12, tzinfo=UTC)
        )
        is None
    )
    assert (
        parse_schedule("*/5 * * * *", "Europe/Berlin").next_after(
            datetime(9999, 12, 31, 23, 58, tzinfo=UTC)
        )
        is None
    )
    assert parse_schedule("every 1d").next_after(datetime(9999, 12, 31, 1, tzinfo=UTC)) is None
