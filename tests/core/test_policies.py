"""Misfire, starting deadline, overlap and retry policies (pure decisions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from belfry.core.jobs import MisfirePolicy, OverlapPolicy, RetrySpec
from belfry.core.policies import (
    MISFIRE_GRACE,
    FirePlan,
    OverlapDecision,
    OverlapVerdict,
    Skip,
    decide_overlap,
    plan_occurrences,
    retry_delay,
)
from belfry.core.schedules import Schedule, next_instants, parse_schedule

MINUTELY = parse_schedule("* * * * *")
T0 = datetime(2027, 1, 1, tzinfo=UTC)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def at(n: float) -> datetime:
    """``n`` minutes after T0."""
    return T0 + minutes(n)


def plan(
    cursor: datetime,
    now: datetime,
    *,
    schedule: Schedule = MINUTELY,
    horizon: timedelta = timedelta(seconds=10),
    paused: bool = False,
    misfire: MisfirePolicy = MisfirePolicy.RUN_ONCE,
    misfire_max: int = 3,
    starting_deadline: timedelta | None = None,
    limit: int = 1000,
) -> FirePlan:
    return plan_occurrences(
        schedule,
        cursor,
        now,
        horizon=horizon,
        paused=paused,
        misfire=misfire,
        misfire_max=misfire_max,
        starting_deadline=starting_deadline,
        limit=limit,
    )


# --- plan_occurrences -------------------------------------------------------------------


def test_on_time_occurrence_fires_and_cursor_moves_on() -> None:
    result = plan(at(5), at(5) + timedelta(seconds=1))
    assert result.fire == [at(5)]
    assert result.skip == []
    assert result.next_cursor == at(6)


def test_occurrences_within_the_horizon_fire_early() -> None:
    result = plan(at(5), at(4) + timedelta(seconds=55), horizon=timedelta(seconds=10))
    assert result.fire == [at(5)]
    assert result.next_cursor == at(6)
    result = plan(at(5), at(4), horizon=timedelta(seconds=10))
    assert result == FirePlan(fire=[], skip=[], next_cursor=at(5))


def test_grace_separates_on_time_from_misfire() -> None:
    assert plan(at(5), at(5) + MISFIRE_GRACE, misfire=MisfirePolicy.SKIP).fire == [at(5)]
    late = plan(
        at(5), at(5) + MISFIRE_GRACE + timedelta(microseconds=1), misfire=MisfirePolicy.SKIP
    )
    assert late.fire == []
    assert late.skip == [Skip(at(5), "misfire: skip policy")]


def test_paused_skips_everything_including_early_ones() -> None:
    result = plan(at(0), at(3), paused=True, horizon=minutes(2))
    assert result.fire == []
    assert result.skip == [Skip(at(n), "paused") for n in range(6)]
    assert result.next_cursor == at(6)


def test_misfire_skip() -> None:
    result = plan(at(0), at(3), misfire=MisfirePolicy.SKIP)
    assert result.fire == [at(3)]
    assert result.skip == [Skip(at(n), "misfire: skip policy") for n in range(3)]
    assert result.next_cursor == at(4)


def test_misfire_run_once_fires_only_the_latest_misfire() -> None:
    result = plan(at(0), at(3) + timedelta(seconds=30), misfire=MisfirePolicy.RUN_ONCE)
    assert result.fire == [at(3)]
    reason = "misfire: coalesced into the run for 2027-01-01T00:03:00Z"
    assert result.skip == [Skip(at(n), reason) for n in range(3)]
    # With an on-time occurrence too, both the catch-up and the on-time one fire.
    result = plan(at(0), at(3), misfire=MisfirePolicy.RUN_ONCE)
    assert result.fire == [at(2), at(3)]
    assert [skip.scheduled_for for skip in result.skip] == [at(0), at(1)]


def test_misfire_run_all_fires_at_most_max() -> None:
    result = plan(
        at(0), at(9) + timedelta(seconds=30), misfire=MisfirePolicy.RUN_ALL, misfire_max=4
    )
    assert result.fire == [at(6), at(7), at(8), at(9)]
    assert result.skip == [Skip(at(n), "misfire: more than 4 missed occurrences") for n in range(6)]
    few = plan(at(0), at(2) + timedelta(seconds=30), misfire=MisfirePolicy.RUN_ALL, misfire_max=4)
    assert few.fire == [at(0), at(1), at(2)]
    assert few.skip == []


def test_misfire_run_all_with_zero_max_fires_nothing() -> None:
    result = plan(
        at(0), at(2) + timedelta(seconds=30), misfire=MisfirePolicy.RUN_ALL, misfire_max=0
    )
    assert result.fire == []
    assert len(result.skip) == 3


def test_starting_deadline_skips_with_reason_before_the_misfire_policy() -> None:
    result = plan(
        at(0),
        at(10) + timedelta(seconds=30),
        misfire=MisfirePolicy.RUN_ALL,
        misfire_max=100,
        starting_deadline=minutes(3),
    )
    # 10:30, 9:30, 8:30, 7:30 ... late; more than 3 minutes late is past the deadline.
    assert result.fire == [at(8), at(9), at(10)]
    assert [skip.scheduled_for for skip in result.skip] == [at(n) for n in range(8)]
    assert result.skip[0].reason == "deadline passed: 10m30s late, starting_deadline is 3m"
    assert result.skip[7].reason == "deadline passed: 3m30s late, starting_deadline is 3m"


def test_deadline_passed_for_every_misfire_fires_nothing_late() -> None:
    result = plan(at(0), at(10) + timedelta(seconds=30), starting_deadline=timedelta(seconds=20))
    assert result.fire == []
    assert all(skip.reason.startswith("deadline passed") for skip in result.skip)
    assert len(result.skip) == 11


def test_a_schedule_that_ends() -> None:
    once = parse_schedule("at 2027-01-01T00:05:00Z")
    result = plan(at(5), at(5), schedule=once)
    assert result.fire == [at(5)]
    assert result.next_cursor is None


def test_limit_and_resumption() -> None:
    first = plan(at(0), at(9) + timedelta(seconds=30), misfire=MisfirePolicy.SKIP, limit=4)
    assert [skip.scheduled_for for skip in first.skip] == [at(0), at(1), at(2), at(3)]
    assert first.next_cursor == at(4)


def test_run_once_across_limited_calls_still_fires_once() -> None:
    now = at(9) + timedelta(seconds=30)
    first = plan(at(0), now, limit=4)
    assert first.fire == []
    assert first.skip == [
        Skip(at(n), "misfire: coalesced into the run for a later missed occurrence")
        for n in range(4)
    ]
    assert first.next_cursor is not None
    second = plan(first.next_cursor, now, limit=4)
    third = plan(second.next_cursor or at(100), now, limit=4)
    assert second.fire == []
    assert third.fire == [at(9)]
    assert third.next_cursor == at(10)


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="limit"):
        plan(at(0), at(1), limit=0)


SCHEDULES = [
    parse_schedule("* * * * *"),
    parse_schedule("*/15 * * * *", "Europe/Berlin"),
    parse_schedule("every 7m"),
    parse_schedule("30 2 * * *", "Europe/Berlin"),
    parse_schedule("R5/2027-01-01T00:00:00Z/PT13M"),
]


@settings(max_examples=150, deadline=None)
@given(
    schedule=st.sampled_from(SCHEDULES),
    start=st.datetimes(datetime(2026, 12, 1), datetime(2027, 1, 1), timezones=st.just(UTC)),
    elapsed=st.timedeltas(timedelta(), timedelta(hours=3)),
    horizon=st.sampled_from([timedelta(), timedelta(seconds=10), minutes(30)]),
    paused=st.booleans(),
    misfire=st.sampled_from(list(MisfirePolicy)),
    misfire_max=st.integers(1, 6),
    starting_deadline=st.sampled_from(
        [None, timedelta(seconds=1), minutes(10), timedelta(hours=5)]
    ),
    limit=st.integers(1, 40),
)
def test_limited_calls_cover_every_occurrence_once_and_decide_like_one_call(
    schedule: Schedule,
    start: datetime,
    elapsed: timedelta,
    horizon: timedelta,
    paused: bool,
    misfire: MisfirePolicy,
    misfire_max: int,
    starting_deadline: timedelta | None,
    limit: int,
) -> None:
    cursor = schedule.next_after(start)
    if cursor is None:
        return
    now = start + elapsed
    options = {
        "horizon": horizon,
        "paused": paused,
        "misfire": misfire,
        "misfire_max": misfire_max,
        "starting_deadline": starting_deadline,
    }
    whole = plan_occurrences(schedule, cursor, now, limit=10**6, **options)  # type: ignore[arg-type]
    fired: list[datetime] = []
    skipped: list[Skip] = []
    position: datetime | None = cursor
    calls = 0
    while position is not None and position <= now + horizon:
        part = plan_occurrences(schedule, position, now, limit=limit, **options)  # type: ignore[arg-type]
        assert len(part.fire) + len(part.skip) <= limit
        assert part.next_cursor is None or part.next_cursor > position
        fired += part.fire
        skipped += part.skip
        position = part.next_cursor
        calls += 1
    # Every occurrence in [cursor, now + horizon] is decided exactly once ...
    expected = [cursor, *next_instants(schedule, cursor, 1000)]
    expected = [instant for instant in expected if instant <= now + horizon]
    assert len(expected) < 1000
    decided = sorted([*fired, *(skip.scheduled_for for skip in skipped)])
    assert decided == expected
    assert position == whole.next_cursor
    # ... and exactly as one unlimited call decides.
    assert fired == whole.fire
    assert [skip.scheduled_for for skip in skipped] == [skip.scheduled_for for skip in whole.skip]
    for mine, theirs in zip(skipped, whole.skip, strict=True):
        # A limited call cannot always name the later run a misfire was coalesced into.
        coalesced = "misfire: coalesced into the run for "
        assert mine.reason == theirs.reason or (
            mine.reason.startswith(coalesced) and theirs.reason.startswith(coalesced)
        )
    assert fired == sorted(fired)
    # The policies' promises.
    late = [instant for instant in fired if now - instant > MISFIRE_GRACE]
    if paused:
        assert fired == []
    elif misfire is MisfirePolicy.SKIP:
        assert late == []
    elif misfire is MisfirePolicy.RUN_ONCE:
        assert len(late) <= 1
    else:
        assert len(late) <= misfire_max
    if starting_deadline is not None:
        assert all(now - instant <= max(starting_deadline, MISFIRE_GRACE) for instant in fired)
    missed_in_deadline = [
        instant
        for instant in expected
        if now - instant > MISFIRE_GRACE
        and (starting_deadline is None or now - instant <= starting_deadline)
    ]
    if not paused and misfire is not MisfirePolicy.SKIP and missed_in_deadline:
        assert missed_in_deadline[-1] in fired  # the latest misfire always runs


# --- decide_overlap ---------------------------------------------------------------------


@pytest.mark.parametrize("policy", list(OverlapPolicy))
def test_nothing_in_flight_always_starts(policy: OverlapPolicy) -> None:
    assert decide_overlap(policy, active=0, waiting_ahead=0, queue_max=1) == OverlapDecision(
        OverlapVerdict.START
    )


def test_allow_starts_alongside() -> None:
    assert decide_overlap(OverlapPolicy.ALLOW, active=3, waiting_ahead=2, queue_max=1).verdict is (
        OverlapVerdict.START
    )


def test_forbid_skips_with_reason() -> None:
    decision = decide_overlap(OverlapPolicy.FORBID, active=1, waiting_ahead=0, queue_max=1)
    assert decision == OverlapDecision(OverlapVerdict.SKIP, "overlap: previous run still active")
    decision = decide_overlap(OverlapPolicy.FORBID, active=0, waiting_ahead=1, queue_max=1)
    assert decision.verdict is OverlapVerdict.SKIP
    assert "waiting" in decision.reason


def test_replace_kills_then_starts() -> None:
    decision = decide_overlap(OverlapPolicy.REPLACE, active=1, waiting_ahead=0, queue_max=1)
    assert decision == OverlapDecision(OverlapVerdict.REPLACE, "overlap: replaced by a newer run")


def test_queue_waits_until_full() -> None:
    assert decide_overlap(OverlapPolicy.QUEUE, active=1, waiting_ahead=0, queue_max=2).verdict is (
        OverlapVerdict.WAIT
    )
    assert decide_overlap(OverlapPolicy.QUEUE, active=1, waiting_ahead=1, queue_max=2).verdict is (
        OverlapVerdict.WAIT
    )
    full = decide_overlap(OverlapPolicy.QUEUE, active=1, waiting_ahead=2, queue_max=2)
    assert full == OverlapDecision(OverlapVerdict.SKIP, "overlap: queue full (2 already waiting)")
    # Runs already waiting go first even when nothing is active right now.
    assert decide_overlap(OverlapPolicy.QUEUE, active=0, waiting_ahead=1, queue_max=2).verdict is (
        OverlapVerdict.WAIT
    )


def test_overlap_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="negative"):
        decide_overlap(OverlapPolicy.ALLOW, active=-1, waiting_ahead=0, queue_max=1)


@given(
    policy=st.sampled_from(list(OverlapPolicy)),
    active=st.integers(0, 5),
    waiting=st.integers(0, 5),
    queue_max=st.integers(1, 5),
)
def test_overlap_decisions_are_total_and_explain_skips(
    policy: OverlapPolicy, active: int, waiting: int, queue_max: int
) -> None:
    decision = decide_overlap(policy, active=active, waiting_ahead=waiting, queue_max=queue_max)
    if decision.verdict is OverlapVerdict.SKIP:
        assert decision.reason.startswith("overlap: ")
        assert policy in (OverlapPolicy.FORBID, OverlapPolicy.QUEUE)
    if policy is OverlapPolicy.ALLOW:
        assert decision.verdict is OverlapVerdict.START


# --- retry_delay ------------------------------------------------------------------------


def test_retry_delay_is_exponential_and_capped() -> None:
    policy = RetrySpec(max=6, backoff=timedelta(seconds=30), max_backoff=minutes(5))
    delays = [retry_delay(policy, attempt, 0.0) for attempt in range(1, 8)]
    assert delays == [
        timedelta(seconds=30),
        minutes(1),
        minutes(2),
        minutes(4),
        minutes(5),
        minutes(5),
        None,
    ]


def test_retry_delay_jitter_adds_up_to_20_percent() -> None:
    policy = RetrySpec(max=3, backoff=timedelta(seconds=10), max_backoff=minutes(10))
    assert retry_delay(policy, 1, 0.5) == timedelta(seconds=11)
    assert retry_delay(policy, 2, 0.999) == timedelta(seconds=20) * 1.1998
    # A misbehaving jitter source is clamped.
    assert retry_delay(policy, 1, 7.0) == timedelta(seconds=12)
    assert retry_delay(policy, 1, -1.0) == timedelta(seconds=10)


def test_no_retries() -> None:
    assert retry_delay(RetrySpec(), 1, 0.0) is None


def test_retry_delay_never_overflows() -> None:
    policy = RetrySpec(max=100, backoff=timedelta(days=1), max_backoff=timedelta(days=2))
    assert retry_delay(policy, 100, 0.0) == timedelta(days=2)
    assert retry_delay(policy, 101, 0.0) is None


def test_retry_attempts_are_numbered_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        retry_delay(RetrySpec(max=3), 0, 0.0)


@given(
    max_retries=st.integers(0, 100),
    backoff=st.integers(1, 3600),
    cap=st.integers(1, 86400),
    spread=st.floats(0, 1, exclude_max=True),
)
def test_retry_delays_grow_stay_bounded_and_stop(
    max_retries: int, backoff: int, cap: int, spread: float
) -> None:
    policy = RetrySpec(
        max=max_retries, backoff=timedelta(seconds=backoff), max_backoff=timedelta(seconds=cap)
    )
    previous = timedelta()
    for attempt in range(1, max_retries + 1):
        delay = retry_delay(policy, attempt, 0.0)
        assert delay is not None
        assert previous <= delay <= timedelta(seconds=cap)
        jittered = retry_delay(policy, attempt, spread)
        assert jittered is not None
        assert delay <= jittered <= delay * 1.2 + timedelta(microseconds=1)
        previous = delay
    assert retry_delay(policy, max_retries + 1, spread) is None
