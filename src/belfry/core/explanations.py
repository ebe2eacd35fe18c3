"""``belfry explain``: a schedule's meaning in words and its next instants (pure).

The JSON shape is INTERFACE.md's,
``{"schedule": …, "timezone": …, "description": …, "next": [RFC 3339 UTC, …]}``, plus
``occurrences``: each occurrence looked at on the way, with what happens to it: it
``runs`` on time, was ``moved`` out of a DST gap, runs a second time in a ``repeated``
hour, is ``deferred`` or ``skipped`` by a calendar, or was ``dropped`` by DST (a wall time
that does not happen, or a repeated one run once). ``next`` lists when the runs start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from belfry.core.calendars import CalendarGate
from belfry.core.dst_marks import DstMark, dst_marks
from belfry.core.schedules import (
    Schedule,
    describe,
    format_instant,
    parse_schedule,
    parse_timezone,
)

__all__ = ["Explanation", "Occurrence", "explain", "explain_schedule", "format_local"]

Status = Literal["runs", "moved", "repeated", "deferred", "skipped", "dropped"]
# Occurrences looked at, at most, for one explanation: a calendar may rule out many
# (an every-minute job outside its weekly window) before the next one that runs.
MAX_EXAMINED = 20_000


@dataclass(frozen=True)
class Occurrence:
    """One occurrence of the schedule and what happens to it."""

    status: Status
    # The nominal instant (aware, UTC); None for a wall time a DST gap skips.
    scheduled_for: datetime | None
    # When its run starts (aware, UTC); None when skipped or dropped.
    runs_at: datetime | None
    # Why it is not a plain run, in words ("" when it is).
    note: str = ""
    # The wall-clock time the schedule names, for a dropped one (naive, in the zone).
    wall: datetime | None = None


@dataclass(frozen=True)
class Explanation:
    schedule: str
    timezone: str
    description: str
    # When the next runs start, aware and in UTC.
    instants: list[datetime]
    # Every occurrence looked at, in time order, with DST and calendar marks.
    occurrences: list[Occurrence] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """INTERFACE.md's ``explain`` JSON shape, with the occurrences."""
        return {
            "schedule": self.schedule,
            "timezone": self.timezone,
            "description": self.description,
            "next": [format_instant(instant) for instant in self.instants],
            "occurrences": [self._occurrence_json(item) for item in self.occurrences],
        }

    def _occurrence_json(self, item: Occurrence) -> dict[str, Any]:
        return {
            "status": item.status,
            "scheduled_for": _rfc3339(item.scheduled_for),
            "runs_at": _rfc3339(item.runs_at),
            "local": self.local_time(item),
            "note": item.note,
        }

    def local_times(self) -> list[str]:
        """The run instants as wall-clock times of the schedule's zone, with offsets."""
        return [format_local(instant, self.timezone) for instant in self.instants]

    def local_time(self, item: Occurrence) -> str:
        """The occurrence's wall-clock time: its instant's, or the wall time it names."""
        if item.scheduled_for is not None:
            return format_local(item.scheduled_for, self.timezone)
        assert item.wall is not None  # an occurrence without an instant names a wall time
        return f"{item.wall:%Y-%m-%d %H:%M:%S} (does not exist: DST gap)"

    @property
    def marked(self) -> bool:
        """Whether any occurrence is more than a plain run."""
        return any(item.status != "runs" for item in self.occurrences)


def _rfc3339(instant: datetime | None) -> str | None:
    return None if instant is None else format_instant(instant)


def format_local(instant: datetime, timezone: str) -> str:
    """``2026-03-29 03:00:00 +02:00 (CEST)``: the wall-clock time in ``timezone``.

    Raises ScheduleError for an unknown zone and ValueError for a naive ``instant``.
    """
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("naive datetime: Belfry only computes with aware instants")
    local = instant.astimezone(parse_timezone(timezone))
    offset = local.strftime("%z")
    text = f"{local:%Y-%m-%d %H:%M:%S} {offset[:3]}:{offset[3:]}"
    if local.microsecond:
        text = f"{local:%Y-%m-%d %H:%M:%S.%f} {offset[:3]}:{offset[3:]}"
    name = local.tzname()
    if name and not name.startswith(("+", "-")) and name != "UTC":
        text += f" ({name})"
    return text


def explain(
    expression: str, timezone: str = "UTC", *, after: datetime, count: int = 5
) -> Explanation:
    """Parse ``expression`` in ``timezone`` and list its first ``count`` instants strictly
    after ``after`` (fewer when the schedule ends).

    A naive ``after`` is read as a wall-clock time of ``timezone``. Raises ScheduleError
    for a schedule or zone Belfry cannot understand, ValueError for a negative count.
    """
    if count < 0:
        raise ValueError(f"count must be 0 or more, got {count}")
    return explain_schedule(parse_schedule(expression, timezone), after=after, count=count)


def explain_schedule(
    schedule: Schedule,
    *,
    after: datetime,
    count: int = 5,
    gate: CalendarGate | None = None,
) -> Explanation:
    """The same for an already parsed schedule (a job's: seeded, bounded), through the
    job's calendar ``gate`` if it has one: the first ``count`` runs, with every occurrence
    skipped, deferred, moved or dropped on the way marked."""
    if count < 0:
        raise ValueError(f"count must be 0 or more, got {count}")
    if after.tzinfo is None or after.utcoffset() is None:
        after = after.replace(tzinfo=schedule.zone)
    after = after.astimezone(UTC)
    occurrences, instants = _walk(schedule, after, count, gate)
    if occurrences and schedule.zone.key != "UTC":
        until = occurrences[-1].scheduled_for or after
        occurrences = _with_dst_marks(occurrences, dst_marks(schedule, after, until), schedule)
    return Explanation(
        schedule=schedule.expression,
        timezone=schedule.zone.key,
        description=describe(schedule),
        instants=instants,
        occurrences=occurrences,
    )


def _walk(
    schedule: Schedule, after: datetime, count: int, gate: CalendarGate | None
) -> tuple[list[Occurrence], list[datetime]]:
    occurrences: list[Occurrence] = []
    instants: list[datetime] = []
    upcoming = schedule.next_after(after) if count else None
    examined = 0
    while upcoming is not None and len(instants) < count and examined < MAX_EXAMINED:
        examined += 1
        following = schedule.next_after(upcoming)
        item = _judge(gate, upcoming, following)
        occurrences.append(item)
        if item.runs_at is not None:
            instants.append(item.runs_at)
        upcoming = following
    return occurrences, instants


def _judge(gate: CalendarGate | None, instant: datetime, following: datetime | None) -> Occurrence:
    if gate is None or gate.is_open:
        return Occurrence("runs", instant, instant)
    verdict = gate.judge(instant, following)
    if verdict.skipped:
        return Occurrence("skipped", instant, None, verdict.reason or "calendar")
    if verdict.deferred:
        assert verdict.start_at is not None
        name = gate.blocker(instant)
        return Occurrence(
            "deferred",
            instant,
            verdict.start_at,
            f"calendar:{name}: deferred to {format_instant(verdict.start_at)}",
        )
    return Occurrence("runs", instant, instant)


def _second_pass(wall: datetime, schedule: Schedule) -> datetime | None:
    """The instant of the second pass of a repeated wall time; None for a wall time that
    does not exist (in a gap)."""
    later = wall.replace(tzinfo=schedule.zone, fold=1).astimezone(UTC)
    if later.astimezone(schedule.zone).replace(tzinfo=None) != wall:
        return None  # in a gap: neither reading of the wall time is a real instant
    return later


def _with_dst_marks(
    occurrences: list[Occurrence], marks: list[DstMark], schedule: Schedule
) -> list[Occurrence]:
    """The occurrences with DST's marks: moved and repeated runs say so; wall times DST
    drops are added where they would have been."""
    by_instant = {item.scheduled_for: index for index, item in enumerate(occurrences)}
    marked = list(occurrences)
    dropped: list[Occurrence] = []
    for mark in marks:
        index = by_instant.get(mark.instant) if mark.instant is not None else None
        if index is not None:
            item = marked[index]
            if item.status == "runs":
                marked[index] = Occurrence(mark.kind, item.scheduled_for, item.runs_at, mark.note)
            else:  # a calendar rules it out too: say both
                note = f"{item.note}; {mark.note}"
                marked[index] = Occurrence(item.status, item.scheduled_for, item.runs_at, note)
        elif mark.kind == "dropped":
            second = _second_pass(mark.wall, schedule)
            dropped.append(Occurrence("dropped", second, None, mark.note, wall=mark.wall))

    def when(item: Occurrence) -> datetime:
        if item.scheduled_for is not None:
            return item.scheduled_for
        assert item.wall is not None
        # A wall time that does not happen sorts where its later reading falls.
        return item.wall.replace(tzinfo=schedule.zone, fold=1).astimezone(UTC)

    return sorted(marked + dropped, key=when)
