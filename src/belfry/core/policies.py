"""Per-job policies as pure decisions: misfire, starting deadline, overlap, retries.

Nothing here reads a clock: ``now`` is always an argument.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from belfry.core.calendars import Calendar, CalendarGate
from belfry.core.durations import format_duration
from belfry.core.jobs import JobSpec, MisfirePolicy, OverlapPolicy, RetrySpec
from belfry.core.schedules import Schedule, format_instant

__all__ = [
    "MISFIRE_GRACE",
    "Deferral",
    "FirePlan",
    "OverlapDecision",
    "OverlapVerdict",
    "Skip",
    "decide_overlap",
    "jitter_offset",
    "job_gate",
    "plan_occurrences",
    "retry_delay",
]

# An occurrence started within this much of its instant is on time, not a misfire.
MISFIRE_GRACE = timedelta(seconds=5)


@dataclass(frozen=True)
class Skip:
    scheduled_for: datetime
    reason: str


@dataclass(frozen=True)
class Deferral:
    """An occurrence ruled out by a calendar that runs later, when the calendars allow."""

    scheduled_for: datetime
    start_at: datetime
    note: str


@dataclass(frozen=True)
class FirePlan:
    """What to do with the occurrences from a job's cursor up to ``now + horizon``."""

    fire: list[datetime] = field(default_factory=list)
    skip: list[Skip] = field(default_factory=list)
    defer: list[Deferral] = field(default_factory=list)
    # The next occurrence not handled by this plan (None: the schedule has ended).
    next_cursor: datetime | None = None


def job_gate(
    spec: JobSpec, calendars: Mapping[str, Calendar]
) -> tuple[CalendarGate | None, str | None]:
    """The job's calendar gate (None when it names no calendar), or, when it names a
    calendar that does not exist, None and the reason to hold its occurrences.

    Holding (recording every occurrence as skipped) is the safe answer to a missing
    calendar: running through a missing ``exclude`` would run on holidays, and which
    instants a missing ``only`` allows is unknown.
    """
    if not spec.exclude and not spec.only:
        return None, None
    missing = [name for name in spec.calendars if name not in calendars]
    if missing:
        return None, f"calendar:{missing[0]} is not defined"
    return (
        CalendarGate(
            [calendars[name] for name in spec.exclude],
            [calendars[name] for name in spec.only],
            defer=spec.on_excluded == "defer",
        ),
        None,
    )


def plan_occurrences(
    schedule: Schedule,
    cursor: datetime,
    now: datetime,
    *,
    horizon: timedelta,
    paused: bool,
    misfire: MisfirePolicy,
    misfire_max: int,
    starting_deadline: timedelta | None,
    limit: int = 1000,
    grace: timedelta = MISFIRE_GRACE,
    gate: CalendarGate | None = None,
    hold: str | None = None,
) -> FirePlan:
    """Decide every occurrence in ``[cursor, now + horizon]``: each is fired or skipped.

    ``cursor`` is the job's first occurrence not yet handled. At most ``limit``
    occurrences are handled per call; ``next_cursor`` says where the next call resumes, and
    successive calls (with the same ``now``) decide exactly as one unlimited call would.
    Occurrences up to ``horizon`` ahead are fired early (the worker starts them exactly at
    their instant). An occurrence more than ``grace`` late is a misfire: more than
    ``starting_deadline`` late, it is skipped; otherwise the misfire policy decides:
    ``skip`` skips it, ``run_once`` fires only the latest misfire (the others are skipped
    as coalesced into it), ``run_all`` fires the latest ``misfire_max`` misfires.
    A paused job skips every occurrence (including the early ones), and so does a job
    held for the reason ``hold`` (e.g. it names a calendar that does not exist).

    With a calendar ``gate``, an occurrence the gate rules out is skipped or deferred as
    the gate judges, before lateness is considered; only the others can misfire.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    instants: list[datetime] = []
    upcoming: datetime | None = cursor
    while upcoming is not None and upcoming <= now + horizon and len(instants) < limit:
        instants.append(upcoming)
        upcoming = schedule.next_after(upcoming)
    plan = FirePlan(next_cursor=upcoming)
    if paused or hold:
        plan.skip.extend(Skip(instant, hold or "paused") for instant in instants)
        return plan

    late: list[datetime] = []
    for index, instant in enumerate(instants):
        if gate is not None and not gate.is_open:
            following = instants[index + 1] if index + 1 < len(instants) else upcoming
            verdict = gate.judge(instant, following)
            if verdict.skipped:
                plan.skip.append(Skip(instant, verdict.reason or "calendar"))
                continue
            if verdict.deferred:
                assert verdict.start_at is not None and verdict.reason is not None
                plan.defer.append(Deferral(instant, verdict.start_at, verdict.reason))
                continue
        lateness = now - instant
        if lateness <= grace:
            plan.fire.append(instant)
        elif starting_deadline is not None and lateness > starting_deadline:
            plan.skip.append(
                Skip(
                    instant,
                    f"deadline passed: {format_duration(_whole_seconds(lateness))} late, "
                    f"starting_deadline is {format_duration(starting_deadline)}",
                )
            )
        else:
            late.append(instant)
    if not late:
        return plan
    if misfire is MisfirePolicy.SKIP:
        plan.skip.extend(Skip(instant, "misfire: skip policy") for instant in late)
    else:
        keep = 1 if misfire is MisfirePolicy.RUN_ONCE else max(misfire_max, 0)
        # Misfires beyond this call's limit are later, so they take precedence.
        later = _count_misfires(schedule, upcoming, now - grace, keep)
        keep = min(max(keep - later, 0), len(late))
        dropped, caught_up = late[: len(late) - keep], late[len(late) - keep :]
        if misfire is MisfirePolicy.RUN_ALL:
            reason = f"misfire: more than {misfire_max} missed occurrences"
        elif caught_up:
            reason = f"misfire: coalesced into the run for {format_instant(caught_up[-1])}"
        else:
            reason = "misfire: coalesced into the run for a later missed occurrence"
        plan.skip.extend(Skip(instant, reason) for instant in dropped)
        plan.fire[:0] = caught_up
    plan.skip.sort(key=lambda skip: skip.scheduled_for)
    return plan


def _count_misfires(
    schedule: Schedule, upcoming: datetime | None, late_before: datetime, most: int
) -> int:
    """How many occurrences from ``upcoming`` on are earlier than ``late_before``
    (counting no further than ``most``)."""
    count = 0
    while upcoming is not None and upcoming < late_before and count < most:
        count += 1
        upcoming = schedule.next_after(upcoming)
    return count


def _whole_seconds(value: timedelta) -> timedelta:
    return timedelta(seconds=max(1, int(value.total_seconds())))


class OverlapVerdict(StrEnum):
    START = "start"
    SKIP = "skip"
    WAIT = "wait"  # stay queued until the active run ends
    REPLACE = "replace"  # kill the active runs, then start


@dataclass(frozen=True)
class OverlapDecision:
    verdict: OverlapVerdict
    reason: str = ""


def decide_overlap(
    policy: OverlapPolicy, *, active: int, waiting_ahead: int, queue_max: int
) -> OverlapDecision:
    """What to do with a due run given ``active`` runs of the same job in flight and
    ``waiting_ahead`` older runs of the job already waiting for them.

    ``allow`` starts it anyway; ``forbid`` skips it; ``replace`` kills the active runs and
    starts it; ``queue`` lets it wait behind at most ``queue_max`` waiting runs, else
    skips it. With nothing active and nothing waiting, every policy starts it.
    """
    if active < 0 or waiting_ahead < 0:
        raise ValueError("active and waiting_ahead cannot be negative")
    if active == 0 and waiting_ahead == 0:
        return OverlapDecision(OverlapVerdict.START)
    if policy is OverlapPolicy.ALLOW:
        return OverlapDecision(OverlapVerdict.START)
    if policy is OverlapPolicy.FORBID:
        if active == 0:
            return OverlapDecision(OverlapVerdict.SKIP, "overlap: an earlier run is still waiting")
        return OverlapDecision(OverlapVerdict.SKIP, "overlap: previous run still active")
    if policy is OverlapPolicy.REPLACE:
        return OverlapDecision(OverlapVerdict.REPLACE, "overlap: replaced by a newer run")
    if waiting_ahead >= queue_max:
        return OverlapDecision(
            OverlapVerdict.SKIP, f"overlap: queue full ({queue_max} already waiting)"
        )
    return OverlapDecision(OverlapVerdict.WAIT)


def jitter_offset(
    seed: str, instant: datetime, jitter: timedelta, following: datetime | None
) -> timedelta:
    """How long after its nominal ``instant`` an occurrence starts, for a job with
    ``jitter``: the same for the same job and occurrence (a hash, not a random draw, so
    every replica and every retry agrees), never negative, and always before the
    ``following`` occurrence."""
    room = jitter if following is None else min(jitter, following - instant)
    digest = hashlib.sha256(f"{seed}@{instant.isoformat()}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64  # in [0, 1)
    return timedelta(microseconds=int(room / timedelta(microseconds=1) * fraction))


def retry_delay(policy: RetrySpec, failed_attempt: int, spread: float) -> timedelta | None:
    """Delay before the next attempt after ``failed_attempt`` (1-based) failed, or None
    when no attempt is left (``policy.max`` retries after the first attempt).

    The delay doubles per attempt from ``backoff`` up to ``max_backoff``; ``spread`` in
    [0, 1) then adds up to 20% jitter (clamped), so retries of many runs do not stampede.
    """
    if failed_attempt < 1:
        raise ValueError(f"attempts are numbered from 1, got {failed_attempt}")
    spread = min(max(spread, 0.0), 1.0)  # a misbehaving jitter source cannot go wild
    if failed_attempt > policy.max:
        return None
    cap = max(policy.max_backoff, timedelta())
    doublings = failed_attempt - 1
    # Compare in seconds before multiplying: 2**99 backoffs overflow a timedelta.
    if policy.backoff.total_seconds() * 2.0**doublings >= cap.total_seconds():
        capped = cap
    else:
        capped = policy.backoff * 2**doublings
    return capped * (1 + 0.2 * spread)
