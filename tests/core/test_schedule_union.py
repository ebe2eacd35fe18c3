"""A list of schedules (their union, each instant once) and ``start``/``end`` bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from belfry.core.jobs import JobSpec
from belfry.core.schedules import (
    BoundedSchedule,
    ScheduleError,
    UnionSchedule,
    bound_schedule,
    describe,
    next_instants,
    parse_schedule,
)

START = datetime(2027, 1, 1, tzinfo=UTC)
EXPRESSIONS = [
    "0 9 * * *",
    "*/20 * * * *",
    "0 9,17 * * MON-FRI",
    "every 45m",
    "rate(2 hours)",
    "at 2027-01-01T09:00:00Z",
    "R3/2027-01-01T08:40:00Z/PT20M",
    "cron(30 8 ? * SAT *)",
    "H H * * *",
]


def utc(*args: int) -> datetime:
    return datetime(*args).replace(tzinfo=UTC)  # type: ignore[arg-type]


def test_union_fires_at_each_instant_once() -> None:
    schedule = parse_schedule(["0 9 * * *", "0 9,17 * * *"])
    assert isinstance(schedule, UnionSchedule)
    assert schedule.expression == "0 9 * * * | 0 9,17 * * *"
    assert next_instants(schedule, START, 4) == [
        utc(2027, 1, 1, 9),
        utc(2027, 1, 1, 17),
        utc(2027, 1, 2, 9),
        utc(2027, 1, 2, 17),
    ]
    assert describe(schedule) == "At 09:00 every day; At 09:00 and 17:00 every day (UTC)"


def test_union_ends_when_every_member_ends() -> None:
    schedule = parse_schedule(["at 2027-01-02T00:00:00Z", "at 2027-01-01T12:00:00Z"])
    assert next_instants(schedule, START, 5) == [utc(2027, 1, 1, 12), utc(2027, 1, 2)]


@settings(max_examples=60, deadline=None)
@given(
    members=st.lists(st.sampled_from(EXPRESSIONS), min_size=1, max_size=4),
    zone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
)
def test_union_is_the_sorted_set_of_the_members_instants(members: list[str], zone: str) -> None:
    end = START + timedelta(days=3)

    def upto(expression: str | list[str]) -> list[datetime]:
        schedule = parse_schedule(expression, zone, seed="a/b")
        return [i for i in next_instants(schedule, START, 400) if i <= end]

    expected = sorted({instant for member in members for instant in upto(member)})
    assert upto(members) == expected


@pytest.mark.parametrize(
    ("expressions", "message"),
    [
        ([], "empty list of schedules: give at least one"),
        (["0 9 * * *", "61 * * * *"], "schedule 2 of 2: invalid cron expression '61 * * * *'"),
        (["every 0s"], "schedule 1 of 1: "),
    ],
)
def test_union_errors_say_which_schedule(expressions: list[str], message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(expressions)
    assert message in str(caught.value)


def test_bounds_include_start_and_end() -> None:
    schedule = bound_schedule(parse_schedule("0 * * * *"), utc(2027, 1, 1, 5), utc(2027, 1, 1, 7))
    assert isinstance(schedule, BoundedSchedule)
    assert next_instants(schedule, START, 10) == [
        utc(2027, 1, 1, 5),
        utc(2027, 1, 1, 6),
        utc(2027, 1, 1, 7),
    ]
    assert schedule.next_after(utc(2027, 1, 1, 5, 30)) == utc(2027, 1, 1, 6)
    assert describe(schedule) == (
        "At the start of every hour, from 2027-01-01T05:00:00Z, until 2027-01-01T07:00:00Z (UTC)"
    )


def test_open_bounds() -> None:
    hourly = parse_schedule("0 * * * *")
    assert bound_schedule(hourly) is hourly
    after = bound_schedule(hourly, start=utc(2027, 6, 1))
    assert after.next_after(START) == utc(2027, 6, 1)
    until = bound_schedule(hourly, end=utc(2027, 1, 1, 1, 30))
    assert next_instants(until, START, 5) == [utc(2027, 1, 1, 1)]


def test_end_before_start_is_an_error() -> None:
    with pytest.raises(ScheduleError, match="end 2027-01-01T00:00:00Z is before start"):
        bound_schedule(parse_schedule("every 1m"), utc(2027, 1, 2), utc(2027, 1, 1))


@settings(max_examples=60, deadline=None)
@given(
    expression=st.sampled_from(EXPRESSIONS),
    start=st.integers(0, 72 * 60),
    length=st.integers(0, 72 * 60),
)
def test_bounded_is_the_inner_instants_within_bounds(
    expression: str, start: int, length: int
) -> None:
    inner = parse_schedule(expression, "Europe/Berlin", seed="x/y")
    low = START + timedelta(minutes=start)
    high = low + timedelta(minutes=length)
    bounded = bound_schedule(inner, low, high)
    # The densest expression fires every 20 min: 1000 instants reach past any ``high``.
    expected = [i for i in next_instants(inner, START, 1000) if low <= i <= high]
    got = next_instants(bounded, START, 400)
    assert got == expected[: len(got)]
    assert len(got) == len(expected) or len(expected) >= 400


# --- in a job's spec ----------------------------------------------------------------------


def spec(**fields: object) -> JobSpec:
    return JobSpec.model_validate({"name": "n", "group": "g", "command": "true", **fields})


def test_job_schedule_list_round_trips() -> None:
    job = spec(schedule=["0 9 * * *", "0 17 * * *"], timezone="Europe/Berlin")
    assert job.to_document()["schedule"] == ["0 9 * * *", "0 17 * * *"]
    assert JobSpec.model_validate(job.to_document()) == job
    assert job.parsed_schedule().next_after(START) == utc(2027, 1, 1, 8)


def test_job_schedule_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"schedule\n.*schedule 2 of 2: invalid cron"):
        spec(schedule=["0 9 * * *", "61 * * * *"])
    with pytest.raises(ValueError, match=r"schedule\n.*empty list of schedules"):
        spec(schedule=[])


def test_job_h_is_seeded_by_group_and_name() -> None:
    minute = {
        name: spec(name=name, schedule="H * * * *").parsed_schedule().next_after(START)
        for name in ("a", "b", "c", "d", "e", "f")
    }
    assert len(set(minute.values())) > 1
    again = spec(name="a", schedule="H * * * *").parsed_schedule().next_after(START)
    assert again == minute["a"]
    seeded = parse_schedule("H * * * *", seed="g/a").next_after(START)
    assert seeded == minute["a"]


def test_job_start_and_end() -> None:
    job = spec(schedule="0 * * * *", start="2027-01-01T05:00:00Z", end="2027-01-01T06:00:00Z")
    assert next_instants(job.parsed_schedule(), START, 5) == [
        utc(2027, 1, 1, 5),
        utc(2027, 1, 1, 6),
    ]
    assert job.to_document()["start"] == "2027-01-01T05:00:00Z"
    assert JobSpec.model_validate(job.to_document()) == job


def test_job_end_before_start_names_end() -> None:
    with pytest.raises(ValueError, match="end: 2027-01-01T00:00:00Z is before start"):
        spec(schedule="every 1m", start="2027-01-02T00:00:00Z", end="2027-01-01T00:00:00Z")
    with pytest.raises(ValueError, match=r"start\n.*timezone"):
        spec(schedule="every 1m", start="2027-01-02T00:00:00")
