"""Schedules and their next instants (DESIGN.md "Schedules").

Every schedule answers one question, ``next_after(instant)``: the first nominal instant
strictly after ``instant``, as an aware UTC datetime, or None when there are no more.
Time zones follow Debian cron's DST rules (cronsim implements them for fixed-time
expressions): a fixed-time occurrence that falls in a spring-forward gap runs right after
the gap; one in the repeated autumn hour runs once; schedules with a wildcard hour (or with
seconds) run at every real instant that matches, in both passes of a repeated hour.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from belfry.core.durations import format_duration, parse_duration

__all__ = [
    "CronSchedule",
    "IntervalSchedule",
    "OneOffSchedule",
    "Schedule",
    "ScheduleError",
    "describe",
    "next_instants",
    "parse_schedule",
    "parse_timezone",
]

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# How far (in wall-clock time) a fold can move an instant: the largest DST shift in tzdata.
_FOLD_WINDOW = timedelta(hours=2)


class ScheduleError(ValueError):
    """A schedule or time zone the user wrote that Belfry cannot understand."""


def parse_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as error:
        raise ScheduleError(
            f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin or UTC)"
        ) from error


class Schedule(ABC):
    """A parsed schedule; immutable and pure."""

    expression: str
    zone: ZoneInfo

    @abstractmethod
    def next_after(self, instant: datetime) -> datetime | None:
        """The first nominal instant strictly after ``instant`` (aware), in UTC."""

    @abstractmethod
    def describe(self) -> str:
        """The schedule in words."""


def _utc(instant: datetime) -> datetime:
    if instant.tzinfo is None:
        raise ValueError("naive datetime: Belfry only computes with aware instants")
    return instant.astimezone(UTC)


@dataclass(frozen=True)
class CronSchedule(Schedule):
    expression: str
    zone: ZoneInfo
    fields: str

    def __post_init__(self) -> None:
        try:
            CronSim(self.fields, datetime(2000, 1, 1, tzinfo=self.zone))
        except (CronSimError, ValueError, IndexError, KeyError) as error:
            raise ScheduleError(f"invalid cron expression {self.expression!r}: {error}") from error

    @property
    def _debian_fixed_time(self) -> bool:
        # cronsim applies Debian's fixed-time DST rules to 5-field expressions whose minute
        # and hour are both fixed; every other expression matches real local instants.
        parts = self.fields.split()
        return len(parts) == 5 and not parts[0].startswith("*") and not parts[1].startswith("*")

    def next_after(self, instant: datetime) -> datetime | None:
        after = _utc(instant)
        if self.zone.key == "UTC":
            return _utc(next(CronSim(self.fields, after)))
        if self._debian_fixed_time:
            # cronsim works on the naive wall clock here; results of the repeated hour that
            # lie before ``after`` are skipped, which makes that hour run once.
            iterator = CronSim(self.fields, after.astimezone(self.zone))
            for local in iterator:
                candidate = _utc(local)
                if candidate > after:
                    return candidate
            return None  # pragma: no cover - cronsim iterators are infinite
        return self._next_real_instant(after)

    def _next_real_instant(self, after: datetime) -> datetime | None:
        """Next matching real instant, counting both passes of a repeated hour."""
        wall = after.astimezone(self.zone).replace(tzinfo=None, fold=0)
        iterator = CronSim(self.fields, (wall - _FOLD_WINDOW).replace(tzinfo=UTC))
        best: datetime | None = None
        for naive in iterator:
            naive = naive.replace(tzinfo=None)
            if best is not None and naive > best.astimezone(self.zone).replace(
                tzinfo=None
            ) + _FOLD_WINDOW:
                return best
            for fold in (0, 1):
                local = naive.replace(tzinfo=self.zone, fold=fold)
                real = _utc(local)
                if real.astimezone(self.zone).replace(tzinfo=None) != naive:
                    continue  # imaginary wall time inside a spring-forward gap
                if real > after and (best is None or real < best):
                    best = real
        return best  # pragma: no cover - cronsim iterators are infinite

    def describe(self) -> str:
        try:
            words = CronSim(self.fields, datetime(2000, 1, 1, tzinfo=UTC)).explain()
        except Exception:  # noqa: BLE001 - explain() is best effort; the schedule is valid
            words = f"cron {self.fields}"
        return words


@dataclass(frozen=True)
class IntervalSchedule(Schedule):
    """``every 5m`` / ``rate(5 minutes)``: instants aligned to multiples of the interval
    since the Unix epoch, so every replica and every restart computes the same ones."""

    expression: str
    zone: ZoneInfo
    interval: timedelta

    def __post_init__(self) -> None:
        if self.interval < timedelta(seconds=1) or self.interval % timedelta(seconds=1):
            raise ScheduleError(
                f"invalid interval in {self.expression!r}: use whole seconds, at least 1s"
            )

    def next_after(self, instant: datetime) -> datetime | None:
        elapsed = _utc(instant) - _EPOCH
        steps = elapsed // self.interval + 1
        return _EPOCH + steps * self.interval

    def describe(self) -> str:
        return f"Every {format_duration(self.interval)}"


@dataclass(frozen=True)
class OneOffSchedule(Schedule):
    """``at 2027-01-01T10:00:00Z``: a single instant."""

    expression: str
    zone: ZoneInfo
    instant: datetime

    def next_after(self, instant: datetime) -> datetime | None:
        return self.instant if self.instant > _utc(instant) else None

    def describe(self) -> str:
        return f"Once, at {self.instant.isoformat().replace('+00:00', 'Z')}"


_RATE = re.compile(r"rate\(\s*(\d+)\s+([a-z]+)\s*\)", re.IGNORECASE)


def parse_schedule(expression: str, timezone: str = "UTC") -> Schedule:
    """Parse any schedule syntax Belfry knows; raise ScheduleError naming the problem."""
    zone = parse_timezone(timezone)
    text = " ".join(str(expression).split())
    if not text:
        raise ScheduleError("empty schedule")
    lowered = text.lower()
    if lowered == "@reboot":
        raise ScheduleError(
            "@reboot is not supported: Belfry schedules are about time, not host boots"
        )
    if lowered in _ALIASES:
        return CronSchedule(text, zone, _ALIASES[lowered])
    if lowered.startswith("every "):
        try:
            return IntervalSchedule(text, zone, parse_duration(text[6:]))
        except ValueError as error:
            raise ScheduleError(f"invalid schedule {text!r}: {error}") from error
    rate = _RATE.fullmatch(text)
    if rate:
        try:
            interval = parse_duration(f"{rate.group(1)} {rate.group(2).lower()}")
        except ValueError as error:
            raise ScheduleError(f"invalid schedule {text!r}: {error}") from error
        return IntervalSchedule(text, zone, interval)
    if lowered.startswith("at "):
        try:
            when = datetime.fromisoformat(text[3:].strip().replace("Z", "+00:00"))
        except ValueError as error:
            raise ScheduleError(f"invalid instant in {text!r}: {error}") from error
        if when.tzinfo is None:
            when = when.replace(tzinfo=zone)
        return OneOffSchedule(text, zone, _utc(when))
    if lowered.startswith("@"):
        raise ScheduleError(
            f"unknown schedule alias {text!r} (known: {', '.join(sorted(_ALIASES))})"
        )
    fields = text.split(" ")
    if len(fields) not in (5, 6):
        raise ScheduleError(
            f"invalid schedule {text!r}: cron needs 5 fields (6 with seconds first), "
            f"got {len(fields)}; or use 'every 5m', 'rate(5 minutes)', 'at <ISO time>'"
        )
    return CronSchedule(text, zone, text)


def next_instants(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` instants strictly after ``after`` (fewer if the schedule ends)."""
    instants: list[datetime] = []
    cursor = after
    while len(instants) < count:
        upcoming = schedule.next_after(cursor)
        if upcoming is None:
            break
        instants.append(upcoming)
        cursor = upcoming
    return instants


def describe(schedule: Schedule) -> str:
    words = schedule.describe()
    if schedule.zone.key != "UTC" and not isinstance(schedule, OneOffSchedule):
        words += f" ({schedule.zone.key})"
    return words
