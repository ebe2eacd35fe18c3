"""The wall-clock times of a schedule that a DST change moves, drops or repeats (pure).

``belfry explain`` marks them next to the instants. The marks follow the rules next_after
follows (schedules.py's module docstring), so that each one accounts for an instant that is
listed at an unexpected time, one that is missing, or one that is listed twice:

* fixed-time cron expressions: a wall time in a spring-forward gap is ``moved`` to the end
  of the gap (``gap="run_after"``, the instant next_after gives) or ``dropped``
  (``gap="skip"``); a wall time of a repeated hour runs in its first pass, and its second
  pass is ``dropped`` (``repeat="once"``) or ``repeated`` (``repeat="both"``);
* every other cron expression: gap wall times are ``dropped`` (they never happen) and
  repeated ones ``repeated`` (both passes run).

Only cron expressions read the wall clock: intervals, one-offs and ISO repeating intervals
have no marks, and neither do zones whose offset never changes. A list of schedules has the
marks of its members, each once, less a ``dropped`` one for a wall time that another member
moves or repeats (it still runs); AWS cron keeps to its years, bounds to ``start``/``end``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from belfry.core.schedules import (
    AwsCronSchedule,
    BoundedSchedule,
    CronSchedule,
    Schedule,
    UnionSchedule,
)
from belfry.core.zone_offsets import offset_changes

__all__ = ["DEFAULT_LIMIT", "DstMark", "MarkKind", "dst_marks"]

MarkKind = Literal["moved", "dropped", "repeated"]
# How many of the wall times a DST change touches are looked at, at most: ``* * * * * *``
# names 3,600 of them in every repeated hour.
DEFAULT_LIMIT = 10_000
_MICROSECOND = timedelta(microseconds=1)
# A change moves wall times by at most a day (Apia's in 2011), and what a mark is about
# happens at most that long after the change: changes further back cannot reach the window.
_REACH = timedelta(days=1, hours=1)


@dataclass(frozen=True)
class DstMark:
    """A wall-clock time that a DST change moves, drops or repeats."""

    # The naive wall-clock time the schedule names, e.g. 2027-03-28 02:30.
    wall: datetime
    kind: MarkKind
    # The instant (aware, UTC) it runs at instead: the end of the gap when moved, the
    # second pass when repeated; None when dropped.
    instant: datetime | None
    # One line in words, e.g. "02:30 does not exist on 2027-03-28 (DST gap): runs at
    # 03:00 CEST instead".
    note: str


@dataclass(frozen=True)
class _Found:
    mark: DstMark
    # When it happens: the instant of a moved or repeated mark, the second pass a dropped
    # repetition would have been, the end of the gap a dropped wall time falls in.
    at: datetime


class _Budget:
    def __init__(self, limit: int) -> None:
        self.left = limit

    def spend(self) -> bool:
        self.left -= 1
        return self.left >= 0


def dst_marks(
    schedule: Schedule, after: datetime, until: datetime, *, limit: int = DEFAULT_LIMIT
) -> list[DstMark]:
    """Marks for the wall times the schedule names in ``(after, until]`` that DST moves,
    drops or repeats, in order.

    A wall time is in the window when what the mark is about happens in it: the instant of
    a moved or repeated mark, the second pass a dropped repetition would have been, the
    end of the gap a dropped wall time falls in. So the moved and repeated marks of a window
    are about instants ``next_after`` gives in it. At most ``limit`` wall times touched by
    a change are looked at; marks past them are left out. Finding the changes costs a
    zone-offset probe per day of the window (about a microsecond each).
    """
    lower, upper = _aware_utc(after), _aware_utc(until)
    found: dict[DstMark, datetime] = {}
    for item in _marks(schedule, lower, upper, _Budget(limit)):
        # A union's members may name the same wall time: one mark each.
        found.setdefault(item.mark, item.at)
    # And a wall time one member drops still runs if another moves or repeats it.
    runs = {mark.wall for mark in found if mark.kind != "dropped"}
    ordered = sorted(found.items(), key=lambda pair: (pair[1], pair[0].wall))
    return [mark for mark, _ in ordered if mark.kind != "dropped" or mark.wall not in runs]


def _aware_utc(instant: datetime) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("naive datetime: Belfry only computes with aware instants")
    return instant.astimezone(UTC)


def _marks(schedule: Schedule, lower: datetime, upper: datetime, budget: _Budget) -> list[_Found]:
    if upper <= lower:
        return []
    if isinstance(schedule, CronSchedule):
        return list(_cron_marks(schedule, lower, upper, budget))
    if isinstance(schedule, AwsCronSchedule):
        years = schedule.years
        return [
            item
            for item in _marks(schedule.cron, lower, upper, budget)
            if years is None or _year(item.mark, schedule.zone) in years
        ]
    if isinstance(schedule, BoundedSchedule):
        # next_after gives the inner schedule's instants in [start, end].
        if schedule.start is not None:
            lower = max(lower, schedule.start - _MICROSECOND)
        if schedule.end is not None:
            upper = min(upper, schedule.end)
        return _marks(schedule.inner, lower, upper, budget)
    if isinstance(schedule, UnionSchedule):
        return [
            item for member in schedule.members for item in _marks(member, lower, upper, budget)
        ]
    return []  # intervals, one-offs, ISO repeating intervals: real time, not the wall clock


def _year(mark: DstMark, zone: ZoneInfo) -> int:
    """The year AWS cron's year field is checked against: that of the instant it runs at."""
    return mark.wall.year if mark.instant is None else mark.instant.astimezone(zone).year


def _cron_marks(
    schedule: CronSchedule, lower: datetime, upper: datetime, budget: _Budget
) -> Iterator[_Found]:
    zone = schedule.zone
    fixed = schedule.fixed_time
    for change, before, after in offset_changes(zone, lower - _REACH, upper):
        if budget.left <= 0:
            return
        shift = after - before
        local = change.replace(tzinfo=None)
        # The wall-clock times the change touches: [start, stop) on the wall clock.
        start, stop = local + min(before, after), local + max(before, after)
        why = _why(zone, change)
        for wall in schedule.wall_times(start - _MICROSECOND):
            if wall >= stop or not budget.spend():
                break
            if shift > timedelta(0):
                found = _in_gap(schedule, fixed, wall, change, why)
            else:
                found = _repeated(schedule, fixed, wall, before, after)
            if lower < found.at <= upper:
                yield found


def _in_gap(schedule: CronSchedule, fixed: bool, wall: datetime, end: datetime, why: str) -> _Found:
    head = f"{_clock(wall)} does not exist on {wall:%Y-%m-%d} ({why})"
    if fixed and schedule.dst.gap == "run_after":
        instant = schedule.fixed_time_instant(wall)
        assert instant is not None  # run_after always finds the end of the gap
        at = _local(instant, schedule.zone, wall)
        return _Found(DstMark(wall, "moved", instant, f"{head}: runs at {at} instead"), instant)
    return _Found(DstMark(wall, "dropped", None, f"{head}: skipped"), end)


def _repeated(
    schedule: CronSchedule, fixed: bool, wall: datetime, before: timedelta, after: timedelta
) -> _Found:
    first = (wall - before).replace(tzinfo=UTC)
    second = (wall - after).replace(tzinfo=UTC)
    head = f"{_clock(wall)} happens twice on {wall:%Y-%m-%d}"
    first_name = _zone_name(first, schedule.zone)
    if fixed and schedule.dst.repeat == "once":
        note = f"{head}: runs once, at the first ({first_name})"
        return _Found(DstMark(wall, "dropped", None, note), second)
    note = f"{head}: runs at both ({first_name}, then {_zone_name(second, schedule.zone)})"
    return _Found(DstMark(wall, "repeated", second, note), second)


def _why(zone: ZoneInfo, change: datetime) -> str:
    """``DST gap`` when daylight saving time starts; Apia's day-line jump is not one."""
    before = (change - _MICROSECOND).astimezone(zone).dst()
    return "DST gap" if before != change.astimezone(zone).dst() else "clock change"


def _clock(wall: datetime) -> str:
    return f"{wall:%H:%M:%S}" if wall.second else f"{wall:%H:%M}"


def _zone_name(instant: datetime, zone: ZoneInfo) -> str:
    local = instant.astimezone(zone)
    name = local.tzname()
    return name if name else f"{local:%z}"


def _local(instant: datetime, zone: ZoneInfo, wall: datetime) -> str:
    """``03:00 CEST``, with the date when it is not the wall time's."""
    local = instant.astimezone(zone)
    clock = f"{local:%Y-%m-%d} {_clock(local)}" if local.date() != wall.date() else _clock(local)
    return f"{clock} {_zone_name(instant, zone)}"
