"""Per-job DST rules: ``dst: {gap: run_after | skip, repeat: once | both}``.

The rules apply to fixed-time cron expressions (minute and hour fields not starting with
``*``); the defaults are Debian cron's (tests/core/test_schedules.py). Wildcard expressions
run at every real instant whatever the rules.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import product
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from ruamel.yaml import YAML
from zone_changes import offset_changes

from belfry.core.jobs import DstSpec, JobSpec
from belfry.core.schedules import (
    CronSchedule,
    DstRules,
    ScheduleError,
    describe,
    next_instants,
    parse_schedule,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")

RUN_AFTER_ONCE = DstRules()
RUN_AFTER_BOTH = DstRules(repeat="both")
SKIP_ONCE = DstRules(gap="skip")
SKIP_BOTH = DstRules(gap="skip", repeat="both")
ALL_RULES = [RUN_AFTER_ONCE, RUN_AFTER_BOTH, SKIP_ONCE, SKIP_BOTH]


def utc(*args: int) -> datetime:
    return datetime(*args).replace(tzinfo=UTC)  # type: ignore[arg-type]


def between(
    expression: str | list[str], zone: str, rules: DstRules, start: datetime, end: datetime
) -> list[datetime]:
    """Every instant in ``(start, end]``, checking they strictly increase."""
    schedule = parse_schedule(expression, zone, dst=rules)
    instants: list[datetime] = []
    cursor = start
    while (upcoming := schedule.next_after(cursor)) is not None and upcoming <= end:
        assert upcoming > cursor, (cursor, upcoming)
        assert upcoming.tzinfo is UTC
        instants.append(upcoming)
        cursor = upcoming
    return instants


def walls(instants: list[datetime], zone: ZoneInfo) -> list[str]:
    return [instant.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S%z") for instant in instants]


# --- Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST; 2026-10-25 03:00 CEST -> 02:00 CET


BERLIN_SPRING = {
    RUN_AFTER_ONCE: ["2026-03-28 02:30:00+0100", "2026-03-29 03:00:00+0200"],
    RUN_AFTER_BOTH: ["2026-03-28 02:30:00+0100", "2026-03-29 03:00:00+0200"],
    SKIP_ONCE: ["2026-03-28 02:30:00+0100"],
    SKIP_BOTH: ["2026-03-28 02:30:00+0100"],
}
BERLIN_AUTUMN = {
    RUN_AFTER_ONCE: ["2026-10-25 02:30:00+0200"],
    RUN_AFTER_BOTH: ["2026-10-25 02:30:00+0200", "2026-10-25 02:30:00+0100"],
    SKIP_ONCE: ["2026-10-25 02:30:00+0200"],
    SKIP_BOTH: ["2026-10-25 02:30:00+0200", "2026-10-25 02:30:00+0100"],
}


@pytest.mark.parametrize("rules", ALL_RULES)
def test_berlin_fixed_time(rules: DstRules) -> None:
    spring = between("30 2 * * *", "Europe/Berlin", rules, utc(2026, 3, 27, 12), utc(2026, 3, 30))
    assert walls(spring, BERLIN) == BERLIN_SPRING[rules]
    autumn = between(
        "30 2 * * *", "Europe/Berlin", rules, utc(2026, 10, 24, 12), utc(2026, 10, 25, 12)
    )
    assert walls(autumn, BERLIN) == BERLIN_AUTUMN[rules]
    # The day after each change is an ordinary day again.
    assert walls(
        between("30 2 * * *", "Europe/Berlin", rules, utc(2026, 10, 25, 12), utc(2026, 10, 27)),
        BERLIN,
    ) == ["2026-10-26 02:30:00+0100"]


def test_berlin_several_times_in_the_changing_hour() -> None:
    spring = (utc(2026, 3, 28, 12), utc(2026, 3, 29, 12))
    autumn = (utc(2026, 10, 24, 12), utc(2026, 10, 25, 12))
    # run_after: both times of the gap merge into one run right after it; skip: none.
    assert walls(between("0,30 2 * * *", "Europe/Berlin", RUN_AFTER_BOTH, *spring), BERLIN) == [
        "2026-03-29 03:00:00+0200"
    ]
    assert between("0,30 2 * * *", "Europe/Berlin", SKIP_ONCE, *spring) == []
    # A time right after the gap still runs once, whether or not the gap merged into it.
    assert walls(between("30 2,3 * * *", "Europe/Berlin", SKIP_ONCE, *spring), BERLIN) == [
        "2026-03-29 03:30:00+0200"
    ]
    assert walls(between("0 2,3 * * *", "Europe/Berlin", RUN_AFTER_BOTH, *spring), BERLIN) == [
        "2026-03-29 03:00:00+0200"
    ]
    # both: the first pass in order, then the second pass in order.
    assert walls(between("0,30 2 * * *", "Europe/Berlin", SKIP_BOTH, *autumn), BERLIN) == [
        "2026-10-25 02:00:00+0200",
        "2026-10-25 02:30:00+0200",
        "2026-10-25 02:00:00+0100",
        "2026-10-25 02:30:00+0100",
    ]
    assert walls(between("30 1-3 * * *", "Europe/Berlin", RUN_AFTER_BOTH, *autumn), BERLIN) == [
        "2026-10-25 01:30:00+0200",
        "2026-10-25 02:30:00+0200",
        "2026-10-25 02:30:00+0100",
        "2026-10-25 03:30:00+0100",
    ]


def test_both_passes_from_any_instant() -> None:
    schedule = parse_schedule("30 2 * * *", "Europe/Berlin", dst=RUN_AFTER_BOTH)
    first_pass, second_pass = utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30)
    assert schedule.next_after(datetime(2026, 10, 25, 2, 10, fold=0, tzinfo=BERLIN)) == first_pass
    # Asked after the first pass (at a later wall time), the second pass is still to come.
    assert schedule.next_after(datetime(2026, 10, 25, 2, 40, fold=0, tzinfo=BERLIN)) == second_pass
    assert schedule.next_after(first_pass) == second_pass
    assert schedule.next_after(datetime(2026, 10, 25, 2, 10, fold=1, tzinfo=BERLIN)) == second_pass
    assert schedule.next_after(second_pass) == datetime(2026, 10, 26, 2, 30, tzinfo=BERLIN)
    # once: asked from inside the second pass, the occurrence is over.
    once = parse_schedule("30 2 * * *", "Europe/Berlin", dst=SKIP_ONCE)
    assert once.next_after(datetime(2026, 10, 25, 2, 10, fold=1, tzinfo=BERLIN)) == datetime(
        2026, 10, 26, 2, 30, tzinfo=BERLIN
    )
    # skip: asked from before the gap, the next run is the day after.
    skip = parse_schedule("30 2 * * *", "Europe/Berlin", dst=SKIP_BOTH)
    assert skip.next_after(utc(2026, 3, 28, 12)) == datetime(2026, 3, 30, 2, 30, tzinfo=BERLIN)


# --- America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST

NEW_YORK_SPRING = {
    RUN_AFTER_ONCE: ["2026-03-07 02:30:00-0500", "2026-03-08 03:00:00-0400"],
    RUN_AFTER_BOTH: ["2026-03-07 02:30:00-0500", "2026-03-08 03:00:00-0400"],
    SKIP_ONCE: ["2026-03-07 02:30:00-0500"],
    SKIP_BOTH: ["2026-03-07 02:30:00-0500"],
}
NEW_YORK_AUTUMN = {
    RUN_AFTER_ONCE: ["2026-10-31 01:30:00-0400", "2026-11-01 01:30:00-0400"],
    RUN_AFTER_BOTH: [
        "2026-10-31 01:30:00-0400",
        "2026-11-01 01:30:00-0400",
        "2026-11-01 01:30:00-0500",
    ],
    SKIP_ONCE: ["2026-10-31 01:30:00-0400", "2026-11-01 01:30:00-0400"],
    SKIP_BOTH: [
        "2026-10-31 01:30:00-0400",
        "2026-11-01 01:30:00-0400",
        "2026-11-01 01:30:00-0500",
    ],
}


@pytest.mark.parametrize("rules", ALL_RULES)
def test_new_york_fixed_time(rules: DstRules) -> None:
    spring = between("30 2 * * *", "America/New_York", rules, utc(2026, 3, 7), utc(2026, 3, 9))
    assert walls(spring, NEW_YORK) == NEW_YORK_SPRING[rules]
    autumn = between("30 1 * * *", "America/New_York", rules, utc(2026, 10, 31), utc(2026, 11, 2))
    assert walls(autumn, NEW_YORK) == NEW_YORK_AUTUMN[rules]


# --- Australia/Lord_Howe: 30-minute shifts. 2026-04-05 02:00 +11 -> 01:30 +10:30;
# 2026-10-04 02:00 +10:30 -> 02:30 +11.


@pytest.mark.parametrize("rules", ALL_RULES)
def test_lord_howe_half_hour_shift(rules: DstRules) -> None:
    spring = between(
        "15 2 * * *", "Australia/Lord_Howe", rules, utc(2026, 10, 3), utc(2026, 10, 4, 12)
    )
    expected = ["2026-10-04 02:30:00+1100"] if rules.gap == "run_after" else []
    assert walls(spring, LORD_HOWE) == expected
    autumn = between(
        "45 1 * * *", "Australia/Lord_Howe", rules, utc(2026, 4, 4), utc(2026, 4, 5, 12)
    )
    expected = ["2026-04-05 01:45:00+1100"]
    if rules.repeat == "both":
        expected.append("2026-04-05 01:45:00+1030")
    assert walls(autumn, LORD_HOWE) == expected
    # 01:15 is before the repeated half hour (01:30-01:59): once, whatever the rules.
    assert (
        len(
            between(
                "15 1 * * *", "Australia/Lord_Howe", rules, utc(2026, 4, 4), utc(2026, 4, 5, 12)
            )
        )
        == 1
    )


# --- other syntaxes that go through CronSchedule ---------------------------------------------


@pytest.mark.parametrize("rules", ALL_RULES)
def test_six_field_aws_union_and_aliases_follow_the_rules(rules: DstRules) -> None:
    expected_spring = ["2026-03-29 03:00:00+0200"] if rules.gap == "run_after" else []
    expected_autumn = ["2026-10-25 02:30:10+0200"]
    if rules.repeat == "both":
        expected_autumn.append("2026-10-25 02:30:10+0100")
    spring = (utc(2026, 3, 28, 12), utc(2026, 3, 29, 12))
    autumn = (utc(2026, 10, 24, 12), utc(2026, 10, 25, 12))
    assert walls(between("10 30 2 * * *", "Europe/Berlin", rules, *spring), BERLIN) == (
        expected_spring
    )
    assert walls(between("10 30 2 * * *", "Europe/Berlin", rules, *autumn), BERLIN) == (
        expected_autumn
    )
    aws = between("cron(30 2 * * ? 2026)", "Europe/Berlin", rules, *autumn)
    assert len(aws) == len(expected_autumn)
    assert len(between("cron(30 2 * * ? *)", "Europe/Berlin", rules, *spring)) == len(
        expected_spring
    )
    # In a union each member follows the rules; an instant both give counts once.
    union = between(["30 2 * * *", "0 3 * * *"], "Europe/Berlin", rules, *spring)
    assert walls(union, BERLIN) == ["2026-03-29 03:00:00+0200"]
    union = between(["30 2 * * *", "45 2 * * *"], "Europe/Berlin", rules, *autumn)
    assert len(union) == (4 if rules.repeat == "both" else 2)
    # @daily in Sao Paulo, 2018-11-04: midnight did not exist.
    sao_paulo = between("@daily", "America/Sao_Paulo", rules, utc(2018, 11, 4), utc(2018, 11, 5))
    assert len(sao_paulo) == (1 if rules.gap == "run_after" else 0)


@pytest.mark.parametrize("rules", ALL_RULES)
@pytest.mark.parametrize("expression", ["*/15 * * * *", "0 */2 * * *", "*/20 2 * * *"])
def test_rules_do_not_change_wildcard_expressions(expression: str, rules: DstRules) -> None:
    for start, end in [
        (utc(2026, 3, 28, 12), utc(2026, 3, 29, 12)),
        (utc(2026, 10, 24, 12), utc(2026, 10, 25, 12)),
    ]:
        assert between(expression, "Europe/Berlin", rules, start, end) == between(
            expression, "Europe/Berlin", RUN_AFTER_ONCE, start, end
        )


@pytest.mark.parametrize("rules", ALL_RULES)
def test_rules_do_not_change_zones_without_dst(rules: DstRules) -> None:
    for zone in ["UTC", "Asia/Kolkata"]:
        schedule = parse_schedule("30 2 * * *", zone, dst=rules)
        assert next_instants(schedule, utc(2026, 3, 1), 40) == next_instants(
            parse_schedule("30 2 * * *", zone), utc(2026, 3, 1), 40
        )


def test_rules_make_the_schedule_differ() -> None:
    default = parse_schedule("30 2 * * *", "Europe/Berlin")
    assert default == parse_schedule("30 2 * * *", "Europe/Berlin", dst=RUN_AFTER_ONCE)
    assert default != parse_schedule("30 2 * * *", "Europe/Berlin", dst=SKIP_ONCE)
    assert isinstance(default, CronSchedule) and default.dst == DstRules()


# --- describe ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "words"),
    [
        (RUN_AFTER_ONCE, "At 02:30 every day (Europe/Berlin)"),
        (SKIP_ONCE, "At 02:30 every day (Europe/Berlin; DST gap: skip)"),
        (RUN_AFTER_BOTH, "At 02:30 every day (Europe/Berlin; DST repeated hour: both)"),
        (SKIP_BOTH, "At 02:30 every day (Europe/Berlin; DST gap: skip, repeated hour: both)"),
    ],
)
def test_describe_names_rules_that_are_not_the_default(rules: DstRules, words: str) -> None:
    assert describe(parse_schedule("30 2 * * *", "Europe/Berlin", dst=rules)) == words


def test_describe_union_and_aws() -> None:
    union = parse_schedule(["30 2 * * *", "every 1h"], "America/New_York", dst=SKIP_BOTH)
    assert describe(union).endswith("(America/New_York; DST gap: skip, repeated hour: both)")
    aws = parse_schedule("cron(30 2 * * ? *)", "Europe/Berlin", dst=SKIP_ONCE)
    assert describe(aws).endswith("(Europe/Berlin; DST gap: skip)")
    # An interval does not read the wall clock: no zone, no rules.
    assert describe(parse_schedule("every 1h", "Europe/Berlin", dst=SKIP_BOTH)) == "Every hour"


def test_unknown_rules_are_rejected() -> None:
    with pytest.raises(ScheduleError, match="unknown DST gap rule 'later'"):
        DstRules(gap="later")  # type: ignore[arg-type]
    with pytest.raises(ScheduleError, match="unknown DST repeat rule 'twice'"):
        DstRules(repeat="twice")  # type: ignore[arg-type]


# --- JobSpec ----------------------------------------------------------------------------------


def job(text: str) -> JobSpec:
    return JobSpec.model_validate(YAML(typ="safe").load(text))


BASE = "name: nightly\nschedule: '30 2 * * *'\ntimezone: Europe/Berlin\ncommand: backup\n"


def test_job_dst_defaults_and_rules() -> None:
    plain = job(BASE)
    assert plain.dst == DstSpec() and plain.dst.rules() == DstRules()
    assert "dst" not in plain.to_document()
    chosen = job(BASE + "dst: {gap: skip, repeat: both}\n")
    assert chosen.dst.rules() == SKIP_BOTH
    assert chosen.to_document()["dst"] == {"gap": "skip", "repeat": "both"}
    assert JobSpec.model_validate(chosen.to_document()) == chosen
    schedule = chosen.parsed_schedule()
    assert describe(schedule).endswith("(Europe/Berlin; DST gap: skip, repeated hour: both)")
    assert walls(next_instants(schedule, utc(2026, 3, 28, 12), 1), BERLIN) == [
        "2026-03-30 02:30:00+0200"
    ]
    assert len(next_instants(schedule, utc(2026, 10, 24, 12), 3)) == 3
    assert walls(next_instants(schedule, utc(2026, 10, 24, 12), 2), BERLIN) == [
        "2026-10-25 02:30:00+0200",
        "2026-10-25 02:30:00+0100",
    ]
    # Bounds still apply on top of the rules.
    bounded = job(BASE + "dst: {repeat: both}\nend: 2026-10-25T01:00:00Z\n").parsed_schedule()
    assert next_instants(bounded, utc(2026, 10, 24, 12), 5) == [utc(2026, 10, 25, 0, 30)]


@pytest.mark.parametrize(
    ("extra", "loc", "kind"),
    [
        ("dst: {gap: later}\n", ("dst", "gap"), "literal_error"),
        ("dst: {repeat: twice}\n", ("dst", "repeat"), "literal_error"),
        ("dst: {gaps: skip}\n", ("dst", "gaps"), "extra_forbidden"),
        ("dst: skip\n", ("dst",), "model_type"),
    ],
)
def test_job_dst_validation_names_the_field(extra: str, loc: tuple[str, ...], kind: str) -> None:
    with pytest.raises(ValidationError) as caught:
        job(BASE + extra)
    errors = caught.value.errors()
    assert [(error["loc"], error["type"]) for error in errors] == [(loc, kind)]


# --- properties: an independent oracle, for all four combinations -----------------------------

# Fixed-time expressions of plain numbers (no names, no steps): the oracle reads them itself.
FIXED = ["30 2 * * *", "0,30 1-3 * * *", "15 1,2,3 * * *", "45 1 * * *", "0 0 * * *"]
FIXED_SECONDS = ["10 30 2 * * *"]
ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Sao_Paulo"]


def _numbers(text: str) -> list[int]:
    values: list[int] = []
    for term in text.split(","):
        low, _, high = term.partition("-")
        values.extend(range(int(low), int(high or low) + 1))
    return sorted(values)


def _real(zone: ZoneInfo, wall: datetime) -> bool:
    instant = wall.replace(tzinfo=zone).astimezone(UTC)
    return instant.astimezone(zone).replace(tzinfo=None) == wall


def oracle(
    expression: str, zone: ZoneInfo, rules: DstRules, lower: datetime, upper: datetime
) -> list[datetime]:
    """Every instant in ``(lower, upper]``: each matching wall time of each local day,
    moved or dropped in a gap and run once or twice when repeated, per ``rules``."""
    parts = expression.split()
    seconds = _numbers(parts[0]) if len(parts) == 6 else [0]
    minutes, hours = _numbers(parts[-5]), _numbers(parts[-4])
    found: set[datetime] = set()
    day = (lower - timedelta(days=2)).date()
    while day <= (upper + timedelta(days=2)).date():
        for hour, minute, second in product(hours, minutes, seconds):
            wall = datetime(day.year, day.month, day.day, hour, minute, second)
            if not _real(zone, wall):
                if rules.gap == "skip":
                    continue
                moved = wall.replace(second=0)  # the first real minute after the gap
                while not _real(zone, moved):
                    moved += timedelta(minutes=1)
                found.add(moved.replace(tzinfo=zone).astimezone(UTC))
                continue
            folds = (0, 1) if rules.repeat == "both" else (0,)
            found.update(wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in folds)
        day += timedelta(days=1)
    return sorted(instant for instant in found if lower < instant <= upper)


@st.composite
def near_a_change(draw: st.DrawFn, zone_name: str) -> datetime:
    """A UTC instant within a few days of one of the zone's offset changes in 2000-2040."""
    changes: tuple[datetime, ...] = ()
    while not changes:
        changes = offset_changes(zone_name, draw(st.integers(2000, 2040)))
    change = draw(st.sampled_from(changes))
    before = draw(st.integers(-3 * 86400, 2 * 3600))
    micro = draw(st.sampled_from([0, 0, 1, 999_999]))
    return change + timedelta(seconds=before, microseconds=micro)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.data(),
    st.sampled_from(ZONES),
    st.sampled_from(FIXED + FIXED_SECONDS),
    st.sampled_from(ALL_RULES),
)
def test_instants_strictly_increase_and_match_the_oracle(
    data: st.DataObject, zone_name: str, expression: str, rules: DstRules
) -> None:
    lower = data.draw(near_a_change(zone_name), label="lower")
    upper = lower + timedelta(days=5)
    expected = oracle(expression, ZoneInfo(zone_name), rules, lower, upper)
    assert between(expression, zone_name, rules, lower, upper) == expected
    # From any instant, not only from the previous one, next_after finds the next instant.
    schedule = parse_schedule(expression, zone_name, dst=rules)
    for fraction in data.draw(st.lists(st.floats(0, 1), min_size=1, max_size=3), label="at"):
        probe = lower + (upper - lower) * fraction
        following = [instant for instant in expected if instant > probe]
        if following:
            assert schedule.next_after(probe) == following[0]
