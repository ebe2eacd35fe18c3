"""``belfry explain``: a schedule's meaning in words and its next instants (pure).

The JSON shape is INTERFACE.md's:
``{"schedule": …, "timezone": …, "description": …, "next": [RFC 3339 UTC, …]}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from belfry.core.schedules import (
    Schedule,
    describe,
    format_instant,
    next_instants,
    parse_schedule,
    parse_timezone,
)

__all__ = ["Explanation", "explain", "explain_schedule", "format_local"]


@dataclass(frozen=True)
class Explanation:
    schedule: str
    timezone: str
    description: str
    # The next instants, aware and in UTC.
    instants: list[datetime]

    def to_json(self) -> dict[str, Any]:
        """INTERFACE.md's ``explain`` JSON shape."""
        return {
            "schedule": self.schedule,
            "timezone": self.timezone,
            "description": self.description,
            "next": [format_instant(instant) for instant in self.instants],
        }

    def local_times(self) -> list[str]:
        """The instants as wall-clock times of the schedule's zone, with their offsets."""
        return [format_local(instant, self.timezone) for instant in self.instants]


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


def explain_schedule(schedule: Schedule, *, after: datetime, count: int = 5) -> Explanation:
    """The same for an already parsed schedule (a job's: seeded, bounded)."""
    if count < 0:
        raise ValueError(f"count must be 0 or more, got {count}")
    if after.tzinfo is None or after.utcoffset() is None:
        after = after.replace(tzinfo=schedule.zone)
    return Explanation(
        schedule=schedule.expression,
        timezone=schedule.zone.key,
        description=describe(schedule),
        instants=next_instants(schedule, after.astimezone(UTC), count),
    )
