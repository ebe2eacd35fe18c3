"""DST marks: the wall times of a schedule that a DST change moves, drops or repeats.

Every expected mark below was worked out by hand from the zone's transitions (checked
against zoneinfo in test_transitions_are_where_the_cases_assume), and the marks must agree
with next_after: a moved or repeated mark's instant is one next_after gives, and every
instant next_after gives at a wall time the expression does not name is a moved one.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from zone_changes import offset_changes

from belfry.core.dst_marks import DstMark, dst_marks
from belfry.core.schedules import DstRules, Schedule, bound_schedule, parse_schedule

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
SANTIAGO = ZoneInfo("America/Santiago")
APIA = ZoneInfo("Pacific/Apia")

DEFAULT = DstRules()
SKIP = DstRules(gap="skip")
BOTH = DstRules(repeat="both")
SKIP_BOTH = DstRules(gap="skip", repeat="both")
ALL_RULES = [DEFAULT, SKIP, BOTH, SKIP_BOTH]


def utc(*args: int) -> datetime:
    return datetime(*args).replace(tzinfo=UTC)  # type: ignore[arg-type]


def local(zone: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    """The UTC instant of a wall-clock time of ``zone`` (fold=1: the second pass)."""
    return datetime(*args, tzinfo=zone, fold=fold).astimezone(UTC)  # type: ignore[misc]


def instants(schedule: Schedule, lower: datetime, upper: datetime) -> list[datetime]:
    found = []
    cursor = lower
    while (upcoming := schedule.next_after(cursor)) is not None and upcoming <= upper:
        found.append(upcoming)
        cursor = upcoming
    return found


def test_transitions_are_where_the_cases_assume() -> None:
    def offsets(zone: ZoneInfo, instant: datetime) -> tuple[str, str]:
        before = (instant - timedelta(microseconds=1)).astimezone(zone)
        return before.strftime("%H:%M:%S %Z"), instant.astimezone(zone).strftime("%H:%M %Z")

    assert offsets(BERLIN, utc(2027, 3, 28, 1)) == ("01:59:59 CET", "03:00 CEST")
    assert offsets(BERLIN, utc(2027, 10, 31, 1)) == ("02:59:59 CEST", "02:00 CET")
    assert offsets(NEW_YORK, utc(2027, 3, 14, 7)) == ("01:59:59 EST", "03:00 EDT")
    assert offsets(NEW_YORK, utc(2027, 11, 7, 6)) == ("01:59:59 EDT", "01:00 EST")
    assert offsets(LORD_HOWE, utc(2026, 10, 3, 15, 30)) == ("01:59:59 +1030", "02:30 +11")
    assert offsets(LORD_HOWE, utc(2026, 4, 4, 15)) == ("01:59:59 +11", "01:30 +1030")
    assert offsets(SANTIAGO, utc(2026, 9, 6, 4)) == ("23:59:59 -04", "01:00 -03")
    assert offsets(SANTIAGO, utc(2026, 4, 5, 3)) == ("23:59:59 -03", "23:00 -04")
    assert offsets(APIA, utc(2011, 12, 30, 10)) == ("23:59:59 -10", "00:00 +14")


def mark(wall: datetime, kind: str, instant: datetime | None, note: str) -> DstMark:
    return DstMark(wall, kind, instant, note)  # type: ignore[arg-type]


BERLIN_GAP = "02:30 does not exist on 2027-03-28 (DST gap)"
BERLIN_TWICE = "02:30 happens twice on 2027-10-31"
SPRING = (utc(2027, 3, 27), utc(2027, 3, 29))
AUTUMN = (utc(2027, 10, 30), utc(2027, 11, 1))

# (expression, zone, rules, window, expected marks)
CASES = [
    # --- Europe/Berlin: 2027-03-28 02:00 CET -> 03:00 CEST; 2027-10-31 03:00 CEST -> 02:00 CET
    pytest.param(
        "30 2 * * *",
        "Europe/Berlin",
        DEFAULT,
        SPRING,
        [
            mark(
                datetime(2027, 3, 28, 2, 30),
                "moved",
                local(BERLIN, 2027, 3, 28, 3),
                f"{BERLIN_GAP}: runs at 03:00 CEST instead",
            )
        ],
        id="berlin-spring-moved",
    ),
    pytest.param(
        "30 2 * * *",
        "Europe/Berlin",
        SKIP,
        SPRING,
        [mark(datetime(2027, 3, 28, 2, 30), "dropped", None, f"{BERLIN_GAP}: skipped")],
        id="berlin-spring-skip-dropped",
    ),
    pytest.param(
        "30 2 * * *",
        "Europe/Berlin",
        BOTH,
        SPRING,
        [
            mark(
                datetime(2027, 3, 28, 2, 30),
                "moved",
                local(BERLIN, 2027, 3, 28, 3),
                f"{BERLIN_GAP}: runs at 03:00 CEST instead",
            )
        ],
        id="berlin-spring-both-still-moved",
    ),
    pytest.param(
        "30 2 * * *",
        "Europe/Berlin",
        DEFAULT,
        AUTUMN,
        [
            mark(
                datetime(2027, 10, 31, 2, 30),
                "dropped",
                None,
                f"{BERLIN_TWICE}: runs once, at the first (CEST)",
            )
        ],
        id="berlin-autumn-once-second-pass-dropped",
    ),
    pytest.param(
        "30 2 * * *",
        "Europe/Berlin",
        SKIP_BOTH,
        AUTUMN,
        [
            mark(
                datetime(2027, 10, 31, 2, 30),
                "repeated",
                local(BERLIN, 2027, 10, 31, 2, 30, fold=1),
                f"{BERLIN_TWICE}: runs at both (CEST, then CET)",
            )
        ],
        id="berlin-autumn-both-repeated",
    ),
    pytest.param(
        "*/30 2 * * *",
        "Europe/Berlin",
        DEFAULT,
        SPRING,
        [
            mark(
                datetime(2027, 3, 28, 2),
                "dropped",
                None,
                "02:00 does not exist on 2027-03-28 (DST gap): skipped",
            ),
            mark(datetime(2027, 3, 28, 2, 30), "dropped", None, f"{BERLIN_GAP}: skipped"),
        ],
        id="berlin-spring-wildcard-dropped",
    ),
    pytest.param(
        "*/30 2 * * *",
        "Europe/Berlin",
        DEFAULT,
        AUTUMN,
        [
            mark(
                datetime(2027, 10, 31, 2),
                "repeated",
                local(BERLIN, 2027, 10, 31, 2, fold=1),
                "02:00 happens twice on 2027-10-31: runs at both (CEST, then CET)",
            ),
            mark(
                datetime(2027, 10, 31, 2, 30),
                "repeated",
                local(BERLIN, 2027, 10, 31, 2, 30, fold=1),
                f"{BERLIN_TWICE}: runs at both (CEST, then CET)",
            ),
        ],
        id="berlin-autumn-wildcard-repeated",
    ),
    pytest.param(
        "15 30 2 * * *",
        "Europe/Berlin",
        DEFAULT,
        SPRING,
        [
            mark(
                datetime(2027, 3, 28, 2, 30, 15),
                "moved",
                local(BERLIN, 2027, 3, 28, 3),
                "02:30:15 does not exist on 2027-03-28 (DST gap): runs at 03:00 CEST instead",
            )
        ],
        id="berlin-spring-seconds",
    ),
    pytest.param(
        "30 2 * * *", "Europe/Berlin", DEFAULT, (utc(2027, 4, 1), utc(2027, 10, 1)), [], id="summer"
    ),
    # --- America/New_York: 2027-03-14 02:00 EST -> 03:00 EDT; 2027-11-07 02:00 EDT -> 01:00 EST
    pytest.param(
        "30 2 * * *",
        "America/New_York",
        DEFAULT,
        (utc(2027, 3, 13), utc(2027, 3, 15)),
        [
            mark(
                datetime(2027, 3, 14, 2, 30),
                "moved",
                local(NEW_YORK, 2027, 3, 14, 3),
                "02:30 does not exist on 2027-03-14 (DST gap): runs at 03:00 EDT instead",
            )
        ],
        id="new-york-spring-moved",
    ),
    pytest.param(
        "30 1 * * *",
        "America/New_York",
        DEFAULT,
        (utc(2027, 11, 6), utc(2027, 11, 8)),
        [
            mark(
                datetime(2027, 11, 7, 1, 30),
                "dropped",
                None,
                "01:30 happens twice on 2027-11-07: runs once, at the first (EDT)",
            )
        ],
        id="new-york-autumn-once",
    ),
    pytest.param(
        "30 1 * * *",
        "America/New_York",
        BOTH,
        (utc(2027, 11, 6), utc(2027, 11, 8)),
        [
            mark(
                datetime(2027, 11, 7, 1, 30),
                "repeated",
                local(NEW_YORK, 2027, 11, 7, 1, 30, fold=1),
                "01:30 happens twice on 2027-11-07: runs at both (EDT, then EST)",
            )
        ],
        id="new-york-autumn-both",
    ),
    # --- Australia/Lord_Howe, half-hour shifts: 2026-10-04 02:00 +10:30 -> 02:30 +11;
    # 2026-04-05 02:00 +11 -> 01:30 +10:30.
    pytest.param(
        "15 2 * * *",
        "Australia/Lord_Howe",
        DEFAULT,
        (utc(2026, 10, 3), utc(2026, 10, 5)),
        [
            mark(
                datetime(2026, 10, 4, 2, 15),
                "moved",
                local(LORD_HOWE, 2026, 10, 4, 2, 30),
                "02:15 does not exist on 2026-10-04 (DST gap): runs at 02:30 +11 instead",
            )
        ],
        id="lord-howe-spring-moved-to-0230",
    ),
    pytest.param(
        "15 2 * * *",
        "Australia/Lord_Howe",
        SKIP,
        (utc(2026, 10, 3), utc(2026, 10, 5)),
        [
            mark(
                datetime(2026, 10, 4, 2, 15),
                "dropped",
                None,
                "02:15 does not exist on 2026-10-04 (DST gap): skipped",
            )
        ],
        id="lord-howe-spring-skip",
    ),
    pytest.param(
        "15,45 1 * * *",
        "Australia/Lord_Howe",
        BOTH,
        (utc(2026, 4, 4), utc(2026, 4, 6)),
        # Only 01:30-01:59 happens twice: 01:15 is untouched.
        [
            mark(
                datetime(2026, 4, 5, 1, 45),
                "repeated",
                local(LORD_HOWE, 2026, 4, 5, 1, 45, fold=1),
                "01:45 happens twice on 2026-04-05: runs at both (+11, then +1030)",
            )
        ],
        id="lord-howe-autumn-half-hour-repeated",
    ),
    # --- America/Santiago, at midnight: 2026-09-06 00:00 -04 -> 01:00 -03;
    # 2026-04-04 24:00 -03 -> 23:00 -04.
    pytest.param(
        "0 0 * * *",
        "America/Santiago",
        DEFAULT,
        (utc(2026, 9, 5), utc(2026, 9, 7)),
        [
            mark(
                datetime(2026, 9, 6),
                "moved",
                local(SANTIAGO, 2026, 9, 6, 1),
                "00:00 does not exist on 2026-09-06 (DST gap): runs at 01:00 -03 instead",
            )
        ],
        id="santiago-midnight-moved",
    ),
    pytest.param(
        "0 0 * * *",
        "America/Santiago",
        SKIP_BOTH,
        (utc(2026, 9, 5), utc(2026, 9, 7)),
        [
            mark(
                datetime(2026, 9, 6),
                "dropped",
                None,
                "00:00 does not exist on 2026-09-06 (DST gap): skipped",
            )
        ],
        id="santiago-midnight-skip",
    ),
    pytest.param(
        "30 23 * * *",
        "America/Santiago",
        DEFAULT,
        (utc(2026, 4, 4), utc(2026, 4, 6)),
        [
            mark(
                datetime(2026, 4, 4, 23, 30),
                "dropped",
                None,
                "23:30 happens twice on 2026-04-04: runs once, at the first (-03)",
            )
        ],
        id="santiago-2330-once",
    ),
    pytest.param(
        "30 23 * * *",
        "America/Santiago",
        BOTH,
        (utc(2026, 4, 4), utc(2026, 4, 6)),
        [
            mark(
                datetime(2026, 4, 4, 23, 30),
                "repeated",
                local(SANTIAGO, 2026, 4, 4, 23, 30, fold=1),
                "23:30 happens twice on 2026-04-04: runs at both (-03, then -04)",
            )
        ],
        id="santiago-2330-both",
    ),
    # --- Pacific/Apia skipped 2011-12-30: 2011-12-29 23:59:59 -10 -> 2011-12-31 00:00 +14.
    # Both offsets are daylight saving time, so this is not a DST gap.
    pytest.param(
        "0 12 * * *",
        "Pacific/Apia",
        DEFAULT,
        (utc(2011, 12, 28), utc(2012, 1, 1)),
        [
            mark(
                datetime(2011, 12, 30, 12),
                "moved",
                local(APIA, 2011, 12, 31),
                "12:00 does not exist on 2011-12-30 (clock change): "
                "runs at 2011-12-31 00:00 +14 instead",
            )
        ],
        id="apia-noon-moved-to-next-day",
    ),
    pytest.param(
        "0 12 * * *",
        "Pacific/Apia",
        SKIP,
        (utc(2011, 12, 28), utc(2012, 1, 1)),
        [
            mark(
                datetime(2011, 12, 30, 12),
                "dropped",
                None,
                "12:00 does not exist on 2011-12-30 (clock change): skipped",
            )
        ],
        id="apia-noon-skip",
    ),
    pytest.param(
        "0 */8 * * *",
        "Pacific/Apia",
        DEFAULT,
        (utc(2011, 12, 28), utc(2012, 1, 1)),
        [
            mark(
                datetime(2011, 12, 30, hour),
                "dropped",
                None,
                f"{hour:02}:00 does not exist on 2011-12-30 (clock change): skipped",
            )
            for hour in (0, 8, 16)
        ],
        id="apia-wildcard-whole-day-dropped",
    ),
    # --- no marks where nothing reads a changing wall clock
    pytest.param("30 2 * * *", "UTC", DEFAULT, SPRING, [], id="utc"),
    pytest.param("30 2 * * *", "Etc/GMT-1", DEFAULT, SPRING, [], id="fixed-offset"),
    pytest.param("30 2 * * *", "Asia/Tokyo", DEFAULT, SPRING, [], id="zone-without-dst"),
    pytest.param("every 30m", "Europe/Berlin", DEFAULT, SPRING, [], id="interval"),
    pytest.param("at 2027-03-28T02:30:00", "Europe/Berlin", DEFAULT, SPRING, [], id="one-off"),
    pytest.param(
        "R/2027-03-28T00:30:00Z/PT30M", "Europe/Berlin", DEFAULT, SPRING, [], id="iso-repeating"
    ),
]


@pytest.mark.parametrize(("expression", "zone", "rules", "window", "expected"), CASES)
def test_marks(
    expression: str,
    zone: str,
    rules: DstRules,
    window: tuple[datetime, datetime],
    expected: list[DstMark],
) -> None:
    schedule = parse_schedule(expression, zone, dst=rules)
    marks = dst_marks(schedule, *window)
    assert marks == expected
    assert all(m.instant is None or m.instant.tzinfo is UTC for m in marks)
    # The marks agree with next_after.
    listed = instants(schedule, *window)
    for each in marks:
        if each.kind in ("moved", "repeated"):
            assert each.instant in listed


def test_the_window_is_about_what_the_mark_is_about() -> None:
    schedule = parse_schedule("30 2 * * *", "Europe/Berlin", dst=BOTH)
    moved_to = local(BERLIN, 2027, 3, 28, 3)
    assert len(dst_marks(schedule, moved_to - timedelta(seconds=1), moved_to)) == 1
    assert dst_marks(schedule, moved_to, moved_to + timedelta(hours=1)) == []
    assert dst_marks(schedule, moved_to - timedelta(hours=1), moved_to - timedelta(seconds=1)) == []
    # Repeated: about the second pass, 01:30 UTC; the first pass, 00:30 UTC, is ordinary.
    second = local(BERLIN, 2027, 10, 31, 2, 30, fold=1)
    assert len(dst_marks(schedule, utc(2027, 10, 31, 0, 40), second)) == 1
    assert dst_marks(schedule, utc(2027, 10, 31, 0), utc(2027, 10, 31, 1)) == []
    assert dst_marks(schedule, second, utc(2027, 11, 1)) == []


def test_marks_are_in_order_and_across_changes() -> None:
    schedule = parse_schedule("30 2 * * *", "Europe/Berlin")
    marks = dst_marks(schedule, utc(2026, 1, 1), utc(2028, 1, 1))
    assert [(m.wall.date().isoformat(), m.kind) for m in marks] == [
        ("2026-03-29", "moved"),
        ("2026-10-25", "dropped"),
        ("2027-03-28", "moved"),
        ("2027-10-31", "dropped"),
    ]


def test_union_members_and_duplicates() -> None:
    union = parse_schedule(["30 2 * * *", "30 2 * * SUN", "*/20 3 * * *"], "Europe/Berlin")
    marks = dst_marks(union, *SPRING)
    # Both fixed-time members name 02:30 on Sunday 03-28: one mark. 03:xx exists.
    assert [(m.wall, m.kind) for m in marks] == [(datetime(2027, 3, 28, 2, 30), "moved")]
    # A wall time one member drops but another runs is not dropped.
    mixed = parse_schedule(["30 2 * * *", "*/30 2 * * *"], "Europe/Berlin")
    assert [(m.wall.strftime("%H:%M"), m.kind) for m in dst_marks(mixed, *SPRING)] == [
        ("02:00", "dropped"),  # the wildcard member's: never happens
        ("02:30", "moved"),  # the fixed-time member runs it at 03:00
    ]
    assert [(m.wall.strftime("%H:%M"), m.kind) for m in dst_marks(mixed, *AUTUMN)] == [
        ("02:00", "repeated"),
        ("02:30", "repeated"),  # the wildcard member runs the second pass
    ]
    assert all(m.instant in instants(mixed, *AUTUMN) for m in dst_marks(mixed, *AUTUMN))


def test_aws_cron_respects_its_years() -> None:
    every_year = parse_schedule("cron(30 2 * * ? *)", "Europe/Berlin")
    only_2027 = parse_schedule("cron(30 2 * * ? 2027)", "Europe/Berlin")
    window = (utc(2026, 1, 1), utc(2029, 1, 1))
    assert len(dst_marks(every_year, *window)) == 6
    assert [m.wall.year for m in dst_marks(only_2027, *window)] == [2027, 2027]


def test_bounds_are_respected() -> None:
    inner = parse_schedule("30 2 * * *", "Europe/Berlin", dst=BOTH)
    window = (utc(2027, 1, 1), utc(2028, 1, 1))
    assert len(dst_marks(inner, *window)) == 2
    moved_to = local(BERLIN, 2027, 3, 28, 3)
    # Start and end are both included, as in next_after.
    assert len(dst_marks(bound_schedule(inner, start=moved_to), *window)) == 2
    assert len(dst_marks(bound_schedule(inner, end=moved_to), *window)) == 1
    after_spring = bound_schedule(inner, start=moved_to + timedelta(seconds=1))
    assert [m.kind for m in dst_marks(after_spring, *window)] == ["repeated"]
    second = local(BERLIN, 2027, 10, 31, 2, 30, fold=1)
    assert len(dst_marks(bound_schedule(inner, end=second - timedelta(seconds=1)), *window)) == 1


def test_work_is_capped() -> None:
    schedule = parse_schedule("* * * * * *", "Europe/Berlin")
    began = time.perf_counter()
    marks = dst_marks(schedule, utc(2000, 1, 1), utc(2030, 1, 1))
    assert time.perf_counter() - began < 5  # generous: a tenth of a second on a laptop
    assert len(marks) == 10_000  # the first 10,000 wall times touched by a change
    assert len(dst_marks(schedule, utc(2000, 1, 1), utc(2030, 1, 1), limit=10)) == 10
    # 2027's spring gap alone: every second of 02:00-02:59.
    assert len(dst_marks(schedule, *SPRING)) == 3600


def test_naive_instants_are_rejected() -> None:
    schedule = parse_schedule("30 2 * * *", "Europe/Berlin")
    with pytest.raises(ValueError, match="naive"):
        dst_marks(schedule, datetime(2027, 3, 27), utc(2027, 3, 29))


# --- properties: marks agree with next_after ---------------------------------------------

ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Santiago",
    "America/Sao_Paulo",
    "Pacific/Chatham",
    "Asia/Tehran",
]


@st.composite
def fixed_time_expression(draw: st.DrawFn) -> tuple[str, set[int], set[int], set[int]]:
    """A fixed-time expression of plain numbers, and the seconds, minutes, hours it names."""
    seconds = draw(st.sets(st.sampled_from([0, 0, 15, 30]), min_size=1, max_size=2))
    minutes = draw(st.sets(st.integers(0, 59), min_size=1, max_size=3))
    hours = draw(st.sets(st.integers(0, 3) | st.integers(22, 23), min_size=1, max_size=3))
    fields = [",".join(map(str, sorted(values))) for values in (minutes, hours)]
    with_seconds = seconds != {0} or draw(st.booleans())
    head = [",".join(map(str, sorted(seconds)))] if with_seconds else []
    return " ".join([*head, *fields, "*", "*", "*"]), seconds, minutes, hours


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    zone_name=st.sampled_from(ZONES),
    expression=fixed_time_expression(),
    rules=st.sampled_from(ALL_RULES),
)
def test_fixed_time_marks_agree_with_next_after(
    data: st.DataObject,
    zone_name: str,
    expression: tuple[str, set[int], set[int], set[int]],
    rules: DstRules,
) -> None:
    text, seconds, minutes, hours = expression
    changes: tuple[datetime, ...] = ()
    while not changes:
        changes = offset_changes(zone_name, data.draw(st.integers(2000, 2040), label="year"))
    change = data.draw(st.sampled_from(changes), label="change")
    lower = change - timedelta(seconds=data.draw(st.integers(0, 2 * 86400), label="before"))
    upper = change + timedelta(seconds=data.draw(st.integers(-3600, 2 * 86400), label="after"))
    zone = ZoneInfo(zone_name)
    schedule = parse_schedule(text, zone_name, dst=rules)
    listed = instants(schedule, lower, upper)
    marks = dst_marks(schedule, lower, upper)

    def named(wall: datetime) -> bool:
        return wall.second in seconds and wall.minute in minutes and wall.hour in hours

    moved = {m.instant for m in marks if m.kind == "moved"}
    for instant in listed:
        if not named(instant.astimezone(zone).replace(tzinfo=None)):
            assert instant in moved, (text, instant)
    for each in marks:
        assert named(each.wall)
        if each.kind in ("moved", "repeated"):
            assert each.instant in listed, (text, each)
        assert (each.kind == "moved") == (rules.gap == "run_after" and "exist" in each.note)
        assert (each.kind == "repeated") == (rules.repeat == "both" and "twice" in each.note)
    # Each second pass next_after gives is marked repeated.
    repeated = {m.instant for m in marks if m.kind == "repeated"}
    for instant in listed:
        wall = instant.astimezone(zone)
        if wall.fold == 1 and wall.replace(fold=0).astimezone(UTC) != instant:
            assert instant in repeated, (text, instant)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    zone_name=st.sampled_from(ZONES),
    expression=st.sampled_from(["*/15 * * * *", "0 * * * *", "*/20 0-3 * * *", "30 */2 * * *"]),
)
def test_wildcard_marks_agree_with_next_after(
    data: st.DataObject, zone_name: str, expression: str
) -> None:
    changes: tuple[datetime, ...] = ()
    while not changes:
        changes = offset_changes(zone_name, data.draw(st.integers(2000, 2040), label="year"))
    change = data.draw(st.sampled_from(changes), label="change")
    lower, upper = change - timedelta(hours=30), change + timedelta(hours=30)
    zone = ZoneInfo(zone_name)
    schedule = parse_schedule(expression, zone_name)
    listed = instants(schedule, lower, upper)
    marks = dst_marks(schedule, lower, upper)
    assert {m.kind for m in marks} <= {"dropped", "repeated"}
    walls = {instant.astimezone(zone).replace(tzinfo=None) for instant in listed}
    for each in marks:
        if each.kind == "dropped":
            assert each.wall not in walls  # it never happens
        else:
            assert each.instant in listed
            assert each.wall in walls
    second_passes = [
        instant
        for instant in listed
        if (wall := instant.astimezone(zone)).fold == 1
        and wall.replace(fold=0).astimezone(UTC) != instant
    ]
    assert sorted(m.instant for m in marks if m.instant is not None) == second_passes
