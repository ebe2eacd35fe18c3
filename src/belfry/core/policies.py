"""Per-job policies as pure decisions: misfire, starting deadline, overlap, retries.

Nothing here reads a clock: ``now`` is always an argument.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from belfry.core.durations import format_duration
from belfry.core.jobs import MisfirePolicy, OverlapPolicy, RetrySpec
from belfry.core.schedules import Schedule

__all__ = [
    "MISFIRE_GRACE",
    "FirePlan",
    "OverlapDecision",
    "OverlapVerdict",
    "Skip",
    "decide_overlap",
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
class FirePlan:
    """What to do with the occurrences from a job's cursor up to ``now + horizon``."""

    fire: list[datetime] = field(default_factory=list)
    skip: list[Skip] = field(default_factory=list)
    # The next occurrence not handled by this plan (None: the schedule has ended).
    next_cursor: datetime | None = None


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
) -> FirePlan:
    """Decide every occurrence in ``[cursor, now + horizon]``: each is fired or skipped.

    ``cursor`` is the job's first occurrence not yet handled. At most ``limit``
    occurrences are handled per call; ``next_cursor`` says where the next call resumes.
    Occurrences up to ``horizon`` ahead are fired early (the worker starts them exactly at
    their instant); late ones follow the misfire policy within the starting deadline.
    """
    instants: list[datetime] = []
    upcoming: datetime | None = cursor
    while upcoming is not None and upcoming <= now + horizon and len(instants) < limit:
        instants.append(upcoming)
        upcoming = schedule.next_after(upcoming)
    plan = FirePlan(next_cursor=upcoming)
    if paused:
        plan.skip.extend(Skip(instant, "paused") for instant in instants)
        return plan

    late: list[datetime] = []
    for instant in instants:
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
        keep = 1 if misfire is MisfirePolicy.RUN_ONCE else misfire_max
        dropped, caught_up = late[:-keep], late[-keep:]
        reason = (
            f"misfire: coalesced into the run for {_rfc3339(caught_up[-1])}"
            if misfire is MisfirePolicy.RUN_ONCE
            else f"misfire: more than {misfire_max} missed occurrences"
        )
        plan.skip.extend(Skip(instant, reason) for instant in dropped)
        plan.fire[:0] = caught_up
    plan.skip.sort(key=lambda skip: skip.scheduled_for)
    return plan


def _whole_seconds(value: timedelta) -> timedelta:
    return timedelta(seconds=max(1, int(value.total_seconds())))


def _rfc3339(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


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
    ``waiting_ahead`` older runs of the job already waiting for them."""
    if active == 0 and waiting_ahead == 0:
        return OverlapDecision(OverlapVerdict.START)
    if policy is OverlapPolicy.ALLOW:
        return OverlapDecision(OverlapVerdict.START)
    if policy is OverlapPolicy.FORBID:
        return OverlapDecision(OverlapVerdict.SKIP, "overlap: previous run still active")
    if policy is OverlapPolicy.REPLACE:
        return OverlapDecision(OverlapVerdict.REPLACE, "overlap: replaced by a newer run")
    if waiting_ahead >= queue_max:
        return OverlapDecision(
            OverlapVerdict.SKIP, f"overlap: queue full ({queue_max} already waiting)"
        )
    return OverlapDecision(OverlapVerdict.WAIT)


def retry_delay(policy: RetrySpec, failed_attempt: int, spread: float) -> timedelta | None:
    """Delay before the next attempt after ``failed_attempt`` (1-based) failed, or None
    when no attempt is left. ``spread`` in [0, 1) adds up to 20% jitter."""
    if failed_attempt > policy.max:
        return None
    base: timedelta = policy.backoff * (2 ** (failed_attempt - 1))
    capped: timedelta = min(base, policy.max_backoff)
    return capped * (1 + 0.2 * spread)
