"""``H``: a deterministic per-job spread, picked by a stable hash of the job's name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from belfry.core.schedules import CronSchedule, ScheduleError, next_instants, parse_schedule

START = datetime(2027, 1, 1, tzinfo=UTC)
seeds = st.text(min_size=0, max_size=40)


def fields(expression: str, seed: str) -> list[str]:
    schedule = parse_schedule(expression, seed=seed)
    assert isinstance(schedule, CronSchedule)
    assert schedule.expression == expression  # what the user wrote is kept
    return schedule.fields.split()


def test_known_values_never_change() -> None:
    # sha256-based: these are the same in every process and every release.
    assert fields("H * * * *", "a/b") == ["10", "*", "*", "*", "*"]
    assert fields("H H * * *", "a/c") == ["47", "1", "*", "*", "*"]
    assert fields("H/15 * * * *", "x/y") == ["3-59/15", "*", "*", "*", "*"]


def test_same_job_same_minute_and_jobs_spread_out() -> None:
    minutes = {fields("H * * * *", f"group/job-{index}")[0] for index in range(200)}
    assert len(minutes) > 40
    assert fields("H * * * *", "ops/backup") == fields("H * * * *", "ops/backup")


def test_fields_of_one_job_get_different_values() -> None:
    picked = [fields("H H H * *", f"group/job-{index}") for index in range(50)]
    assert any(minute != hour for minute, hour, *_ in picked)


@settings(max_examples=200, deadline=None)
@given(seed=seeds)
def test_plain_h_is_inside_each_fields_range(seed: str) -> None:
    second, minute, hour, day, month, weekday = map(int, fields("H H H H H H", seed))
    assert 0 <= second <= 59
    assert 0 <= minute <= 59
    assert 0 <= hour <= 23
    assert 1 <= day <= 28  # a day every month has
    assert 1 <= month <= 12
    assert 0 <= weekday <= 6


@settings(max_examples=200, deadline=None)
@given(seed=seeds, low=st.integers(0, 59), size=st.integers(0, 59), step=st.integers(1, 60))
def test_h_range_and_step_stay_inside_the_range(seed: str, low: int, size: int, step: int) -> None:
    high = min(low + size, 59)
    schedule = parse_schedule(f"H({low}-{high})/{step} * * * *", seed=seed)
    # From just before START (minute 0): next_instants is strictly after its start.
    instants = next_instants(schedule, START - timedelta(microseconds=1), 12)
    assert instants
    minutes = {instant.minute for instant in instants}
    assert all(low <= minute <= high for minute in minutes)
    assert min(minutes) < low + step  # starts within the first step
    only = parse_schedule(f"H({low}-{high}) * * * *", seed=seed)
    assert low <= only.next_after(START).minute <= high  # type: ignore[union-attr]


@settings(max_examples=50, deadline=None)
@given(
    seed=seeds,
    expression=st.sampled_from(
        [
            "H * * * *",
            "H(0-29)/10 * * * *",
            "H H * * *",
            "H/15 * * * *",
            "0 H H(1-5) * *",
            "H H * * H",
        ]
    ),
)
def test_same_seed_same_instants_strictly_increasing(seed: str, expression: str) -> None:
    first = next_instants(parse_schedule(expression, seed=seed), START, 20)
    again = next_instants(parse_schedule(expression, seed=seed), START, 20)
    assert first == again
    assert all(earlier < later for earlier, later in pairwise(first))


def test_h_slash_n_runs_every_n_minutes() -> None:
    instants = next_instants(parse_schedule("H/15 * * * *", seed="a/b"), START, 8)
    assert {b - a for a, b in pairwise(instants)} == {timedelta(minutes=15)}


def test_h_in_aws_cron_and_lists() -> None:
    aws = parse_schedule("cron(H 9 ? * MON-FRI *)", seed="a/b")
    assert aws.next_after(START) == datetime(2027, 1, 1, 9, 10, tzinfo=UTC)
    assert fields("H,30 * * * *", "a/b")[0] == "10,30"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("H(5) * * * *", "bad minute field 'H(5)' (write H, H(a-b), H/n or H(a-b)/n)"),
        ("H(50-70) * * * *", "bad minute field 'H(50-70)' (the range of H(a-b) must lie"),
        ("* H(9-5) * * *", "bad hour field 'H(9-5)'"),
        ("H/0 * * * *", "bad minute field 'H/0' (the step of H/n must be at least 1)"),
        ("Hx * * * *", "bad minute field 'Hx'"),
    ],
)
def test_errors_name_the_field(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(expression)
    assert message in str(caught.value)


def test_thursday_is_not_h() -> None:
    assert fields("0 9 * * THU", "a/b") == ["0", "9", "*", "*", "THU"]
