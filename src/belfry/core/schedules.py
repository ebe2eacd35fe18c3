"""Schedules and their next instants (DESIGN.md "Schedules").

Every schedule answers one question, ``next_after(instant)``: the first nominal instant
strictly after ``instant``, as an aware UTC datetime, or None when there are no more.

Cron expressions are evaluated on the wall clock of the job's IANA zone, with Debian
cron's DST rules (DESIGN.md guarantee 6):

* A *fixed-time* expression, one whose minute and hour fields do not start with ``*``
  (``30 2 * * *``, ``0 9-17 * * MON-FRI``, also with a seconds field), runs once per
  matching wall-clock time: a time skipped by a spring-forward gap runs right after the gap
  (at the first real instant, e.g. 03:00), and a time of a repeated autumn hour runs once,
  in its first pass.
* Every other expression (``*/15 * * * *``, ``0 */2 * * *``, ``* 2 * * *``) runs at every
  real instant whose wall-clock time matches: in both passes of a repeated hour, and never
  in a gap.

A job may choose otherwise for its fixed-time expressions with ``DstRules`` (a job's
``dst: {gap: run_after | skip, repeat: once | both}``): ``gap="skip"`` drops an occurrence
whose wall-clock time does not exist that day, and ``repeat="both"`` runs an occurrence
whose wall-clock time happens twice in both passes (fold=0, then fold=1). The rules change
nothing for wildcard expressions, which already run at every real instant (never in a gap,
in both passes), nor in zones without DST.

cron_fields.py matches the fields on a naive wall clock (with cronsim's parser and day rules,
plus Quartz's ``nW``, the weekday nearest day n); this module maps wall-clock times to real
instants. It assumes, as tzdata does for every zone, that a zone never changes its UTC
offset and changes it back within one day.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError

from belfry.core.cron_fields import CronFieldError, CronFields, parse_cron_fields
from belfry.core.durations import parse_duration
from belfry.core.zone_offsets import first_change, utc_offset

__all__ = [
    "AwsCronSchedule",
    "BoundedSchedule",
    "CronSchedule",
    "DstGap",
    "DstRepeat",
    "DstRules",
    "IntervalSchedule",
    "OneOffSchedule",
    "RepeatingSchedule",
    "Schedule",
    "ScheduleError",
    "UnionSchedule",
    "bound_schedule",
    "describe",
    "format_instant",
    "humanize_interval",
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
_MICROSECOND = timedelta(microseconds=1)
# Zones whose offset never changes: cron maths runs directly on UTC.
_UTC_KEYS = frozenset({"UTC", "Etc/UTC", "Etc/Universal", "Universal", "Etc/Zulu", "Zulu"})
# A zone name whose meaning depends on the host, not on tzdata.
_HOST_ZONES = frozenset({"localtime", "posixrules", "Factory"})


class ScheduleError(ValueError):
    """A schedule or time zone the user wrote that Belfry cannot understand."""


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    # ZoneInfo keeps only 8 zones alive itself: past that, a mix of zones reads tzdata again
    # for every schedule parsed. There are about 600 zones.
    return ZoneInfo(name)


def parse_timezone(name: str) -> ZoneInfo:
    """The IANA zone called ``name``; ScheduleError (with a suggestion) if there is none."""
    if isinstance(name, str) and name not in _HOST_ZONES:
        try:
            return _zone(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    hint = "use an IANA name such as Europe/Berlin or UTC"
    if isinstance(name, str) and name.strip():
        lowered = {zone.lower(): zone for zone in _known_zones()}
        close = lowered.get(name.strip().lower()) or next(
            iter(difflib.get_close_matches(name.strip(), sorted(_known_zones()), n=1)), None
        )
        if close:
            hint = f"did you mean {close}?"
    raise ScheduleError(f"unknown time zone {name!r} ({hint})")


DstGap = Literal["run_after", "skip"]
DstRepeat = Literal["once", "both"]


@dataclass(frozen=True)
class DstRules:
    """What a fixed-time cron expression does around DST changes (module docstring).

    ``gap``: ``run_after`` (Debian cron: at the first real instant after the gap) or
    ``skip`` (not that day). ``repeat``: ``once`` (Debian cron: in the first pass) or
    ``both`` (in each pass).
    """

    gap: DstGap = "run_after"
    repeat: DstRepeat = "once"

    def __post_init__(self) -> None:
        if self.gap not in get_args(DstGap):
            raise ScheduleError(
                f"unknown DST gap rule {self.gap!r} (use {' or '.join(get_args(DstGap))})"
            )
        if self.repeat not in get_args(DstRepeat):
            raise ScheduleError(
                f"unknown DST repeat rule {self.repeat!r} (use {' or '.join(get_args(DstRepeat))})"
            )

    @property
    def is_default(self) -> bool:
        return self == _DEBIAN

    def describe(self) -> str:
        """The rules that differ from Debian cron's: ``DST gap: skip, repeated hour: both``."""
        words = []
        if self.gap != _DEBIAN.gap:
            words.append(f"DST gap: {self.gap}")
        if self.repeat != _DEBIAN.repeat:
            words.append(f"{'repeated hour' if words else 'DST repeated hour'}: {self.repeat}")
        return ", ".join(words)


_DEBIAN = DstRules()


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
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("naive datetime: Belfry only computes with aware instants")
    return instant.astimezone(UTC)


def format_instant(instant: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``: ``2027-01-01T10:00:00Z``."""
    return _utc(instant).isoformat().replace("+00:00", "Z")


_FIELD_NAMES = ("second", "minute", "hour", "day-of-month", "month", "day-of-week")
_FIELD_HELP = {
    "second": "0-59",
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31, L, LW, or nW: the weekday nearest day n, e.g. 15W",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 or SUN-SAT, also 5L (last Friday) or MON#2 (second Monday)",
}


def _cron_error(expression: str, fields: str, error: Exception) -> ScheduleError:
    parts = fields.split()
    if len(parts) == 5:
        parts.insert(0, "0")
    message = str(error)
    name = message[4:] if message.startswith("Bad ") else ""
    if name not in _FIELD_NAMES or len(parts) != 6:
        return ScheduleError(f"invalid cron expression {expression!r}: {message}")
    index = _FIELD_NAMES.index(name)
    text = parts[index]
    alone = ["0", "0", "0", "*", "*", "*"]
    alone[index] = text
    try:
        parse_cron_fields(" ".join(alone))
    except (CronSimError, ValueError, IndexError, KeyError):
        detail = f"bad {name} field {text!r} (allowed: {_FIELD_HELP[name]})"
        if "?" in text:
            detail += "; '?' is Quartz syntax, use '*'"
    else:
        detail = f"day-of-month {text!r} never occurs in month {parts[4]!r}"
    return ScheduleError(f"invalid cron expression {expression!r}: {detail}")


@dataclass(frozen=True)
class CronSchedule(Schedule):
    expression: str
    zone: ZoneInfo
    fields: str
    dst: DstRules = _DEBIAN
    # The parsed fields (shared by every schedule with the same fields).
    _parsed: CronFields = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            parsed = parse_cron_fields(self.fields)
        except CronFieldError as error:
            raise ScheduleError(f"invalid cron expression {self.expression!r}: {error}") from error
        except (CronSimError, ValueError, IndexError, KeyError) as error:
            raise _cron_error(self.expression, self.fields, error) from error
        object.__setattr__(self, "_parsed", parsed)

    @property
    def fixed_time(self) -> bool:
        """Debian cron's "fixed-time job": minute and hour fields do not start with ``*``."""
        return self._parsed.fixed_time

    def wall_times(self, after: datetime) -> Iterator[datetime]:
        """The wall-clock times the fields match strictly after the wall-clock time
        ``after``, in order (naive, or with ``after``'s tzinfo as a mere label), whether or
        not they exist in the zone."""
        return self._parsed.walls(after)

    def fixed_time_instant(self, wall: datetime) -> datetime | None:
        """The instant (UTC) a fixed-time expression runs for the naive wall time ``wall``
        under its DST rules: the first pass of a repeated time, the end of the gap for a
        time that does not exist (None with ``gap="skip"``)."""
        return self._resolve_fixed_time(wall.replace(tzinfo=self.zone, fold=0))

    def next_after(self, instant: datetime) -> datetime | None:
        after = _utc(instant)
        try:
            if self.zone.key in _UTC_KEYS:
                return self._parsed.next_wall(after)
            if not self._parsed.fixed_time:
                return self._next_real_instant(after)
            if self.dst.repeat == "once":
                return self._next_fixed_time(after)
            # Both passes: every real instant whose wall time matches (which is the whole
            # answer with gap=skip), plus the instants moved out of a gap.
            real = self._next_real_instant(after)
            if self.dst.gap == "skip":
                return real
            moved = self._next_fixed_time(after)
            if real is None or moved is None:
                return moved if real is None else real
            return min(real, moved)
        except OverflowError:  # past datetime.max: the schedule has ended
            return None

    def _next_fixed_time(self, after: datetime) -> datetime | None:
        # A matching wall time maps to its real instant (the first pass when repeated; the
        # end of the gap when skipped). That map never decreases, so the first wall time
        # after ``after``'s own wall time whose instant is later than ``after`` is the one.
        # With gap=skip, wall times of a gap map to nothing and are passed over.
        # Wall times carry the zone as tzinfo: read with fold=0, as wanted.
        parsed = self._parsed
        wall = parsed.next_wall(after.astimezone(self.zone))
        while wall is not None:
            candidate = self._resolve_fixed_time(wall)
            if candidate is not None and candidate > after:
                return candidate
            wall = parsed.next_wall(wall)
        return None

    def _resolve_fixed_time(self, wall: datetime) -> datetime | None:
        """``wall``: a wall time of the zone, fold=0 (the offset before a change)."""
        first = wall.astimezone(UTC)
        # Same tzinfo: == compares the wall-clock fields, so this asks whether the wall
        # time survives the round trip, i.e. exists.
        if first.astimezone(self.zone) == wall:
            return first  # a real wall time; in a repeated hour, its first pass
        if self.dst.gap == "skip":
            return None
        # Inside a spring-forward gap: fold=1 reads the wall time with the offset from
        # after the gap, fold=0 with the one from before, so the gap's end lies between.
        before = wall.replace(fold=1).astimezone(UTC)
        end = first_change(self.zone, before, first, utc_offset(self.zone, before))
        return end if end is not None else first

    def _next_real_instant(self, after: datetime) -> datetime | None:
        """Next real instant whose wall-clock time matches, counting both passes of a
        repeated hour: walk the zone's stretches of constant UTC offset, in each of which
        wall-clock time is UTC shifted by that offset."""
        lower, offset = after, utc_offset(self.zone, after)
        while True:
            wall = self._parsed.next_wall(lower + offset)  # UTC-tagged wall-clock time
            if wall is None:
                return None
            candidate = wall - offset
            change = first_change(self.zone, lower, candidate, offset)
            if change is None:
                return candidate
            # The offset changes before that candidate: resume at the change.
            lower, offset = change - _MICROSECOND, utc_offset(self.zone, change)

    def describe(self) -> str:
        return _describe_cron(self.fields, self._parsed.nearest)


_EVERY_NTH = re.compile(r"\*/(\d+)")
_NTH_DAY = re.compile(r"on the \w+ day of")


def _describe_cron(fields: str, nearest: int | None = None) -> str:
    parts = fields.split()
    if nearest is not None:
        # cronsim has no words for nW: describe day n, then say which day runs.
        parts[-3] = str(nearest)
        words = _describe_cron(" ".join(parts))
        said, count = _NTH_DAY.subn(f"on the weekday nearest day {nearest} of", words, 1)
        return said if count else f"{words}, on the weekday nearest day {nearest}"
    # cronsim says "Every 15th minute of every hour"; say "Every 15 minutes" where exact.
    rest_star = all(part == "*" for part in parts[1:])
    step = _EVERY_NTH.fullmatch(parts[0])
    if rest_star and step and 60 % int(step.group(1)) == 0 and int(step.group(1)) > 1:
        unit = "minutes" if len(parts) == 5 else "seconds"
        return f"Every {int(step.group(1))} {unit}"
    if len(parts) == 6 and parts[0] == "0" and all(part == "*" for part in parts[2:]):
        minutes = _EVERY_NTH.fullmatch(parts[1])
        if parts[1] == "*":
            return "Every minute"
        if minutes and 60 % int(minutes.group(1)) == 0 and int(minutes.group(1)) > 1:
            return f"Every {int(minutes.group(1))} minutes"
    try:
        words = str(CronSim(fields, datetime(2000, 1, 1, tzinfo=UTC)).explain())
    except Exception:  # explain() is best effort; the expression itself is valid
        words = f"cron {fields}"
    return words


_UNIT_WORDS = (
    (timedelta(weeks=1), "week"),
    (timedelta(days=1), "day"),
    (timedelta(hours=1), "hour"),
    (timedelta(minutes=1), "minute"),
    (timedelta(seconds=1), "second"),
)


def humanize_interval(interval: timedelta) -> str:
    """``Every 90 seconds``, ``Every hour``, ``Every 90 minutes``, ``Every 2 days``."""
    for size, word in _UNIT_WORDS:
        count, remainder = divmod(interval, size)
        if count and not remainder:
            return f"Every {word}" if count == 1 else f"Every {count} {word}s"
    milliseconds = interval // timedelta(milliseconds=1)
    return f"Every {milliseconds} milliseconds"


@dataclass(frozen=True)
class IntervalSchedule(Schedule):
    """``every 5m`` / ``rate(5 minutes)``: instants aligned to multiples of the interval
    since the Unix epoch, so every replica and every restart computes the same ones (and
    ``every 1d`` fires at 00:00 UTC, whatever the zone)."""

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
        try:
            return _EPOCH + steps * self.interval
        except OverflowError:
            return None

    def describe(self) -> str:
        return humanize_interval(self.interval)


@dataclass(frozen=True)
class OneOffSchedule(Schedule):
    """``at 2027-01-01T10:00:00Z``: a single instant."""

    expression: str
    zone: ZoneInfo
    instant: datetime

    def next_after(self, instant: datetime) -> datetime | None:
        return self.instant if self.instant > _utc(instant) else None

    def describe(self) -> str:
        return f"Once, at {format_instant(self.instant)}"


@dataclass(frozen=True)
class NoSchedule(Schedule):
    """A job without a schedule of its own: something else starts it (``after:`` other
    jobs). ``expression`` says what, e.g. ``after etl/extract succeeds``."""

    expression: str
    zone: ZoneInfo

    def next_after(self, instant: datetime) -> datetime | None:
        return None

    def describe(self) -> str:
        return f"Runs {self.expression}"


@dataclass(frozen=True)
class RepeatingSchedule(Schedule):
    """ISO 8601 repeating interval ``R[n]/<start>/<duration>`` (as in Chronos): ``start``
    and then every ``period`` (an exact duration), ``repetitions`` times in all, or forever
    when ``R`` has no number."""

    expression: str
    zone: ZoneInfo
    start: datetime
    period: timedelta
    repetitions: int | None

    def __post_init__(self) -> None:
        if self.period < timedelta(seconds=1) or self.period % timedelta(seconds=1):
            raise ScheduleError(
                f"invalid period in {self.expression!r}: use whole seconds, at least PT1S"
            )

    def next_after(self, instant: datetime) -> datetime | None:
        after = _utc(instant)
        index = 0 if after < self.start else (after - self.start) // self.period + 1
        if self.repetitions is not None and index >= self.repetitions:
            return None
        try:
            return self.start + index * self.period
        except OverflowError:
            return None

    def describe(self) -> str:
        words = f"{humanize_interval(self.period)} from {format_instant(self.start)}"
        if self.repetitions is None:
            return words
        times = "once" if self.repetitions == 1 else f"{self.repetitions} times"
        return f"{words}, {times}"


_RATE = re.compile(r"rate\(\s*(\d+)\s+([a-z]+)\s*\)", re.IGNORECASE)
_REPEATING = re.compile(r"R(\d*)/([^/]+)/(P[^/]+)", re.IGNORECASE)
_ISO_DURATION = re.compile(
    r"P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?",
    re.IGNORECASE,
)


def _parse_instant(text: str, zone: ZoneInfo, expression: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as error:
        raise ScheduleError(
            f"invalid instant in {expression!r}: {error} (use e.g. 2027-01-01T10:00:00Z)"
        ) from error
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone)
    return _utc(when)


def _parse_iso_duration(text: str, expression: str) -> timedelta:
    match = _ISO_DURATION.fullmatch(text)
    if not match or text.upper() in ("P", "PT") or text.upper().endswith("T"):
        raise ScheduleError(
            f"invalid duration {text!r} in {expression!r}: use e.g. PT1H, PT30M, P1D or P1W "
            "(years and months are not exact durations; use cron for calendar schedules)"
        )
    values = {unit: int(value) for unit, value in match.groupdict(default="0").items()}
    return timedelta(**values)


def parse_schedule(
    expression: str | Sequence[str],
    timezone: str = "UTC",
    *,
    seed: str = "",
    dst: DstRules = _DEBIAN,
) -> Schedule:
    """Parse any schedule syntax Belfry knows; raise ScheduleError naming the problem.

    A list of expressions fires at the union of their instants, each instant once.
    ``seed`` (a job's ``group/name``) picks the values of ``H`` fields. ``dst`` is what
    fixed-time cron expressions do in DST gaps and repeated hours (module docstring).
    """
    if not isinstance(expression, str):
        return _parse_union(list(expression), timezone, seed, dst)
    zone = parse_timezone(timezone)
    text = " ".join(str(expression).split())
    if not text:
        raise ScheduleError("empty schedule")
    lowered = text.lower()
    if lowered == "@reboot":
        raise ScheduleError(
            "@reboot is not supported: Belfry schedules are about time, not host boots "
            "(run the command from the host's init system instead)"
        )
    if lowered in _ALIASES:
        return CronSchedule(text, zone, _ALIASES[lowered], dst)
    if lowered.startswith("every "):
        try:
            return IntervalSchedule(text, zone, parse_duration(text[6:]))
        except (ValueError, OverflowError) as error:
            if isinstance(error, ScheduleError):
                raise
            raise ScheduleError(f"invalid schedule {text!r}: {error}") from error
    if lowered.startswith("rate("):
        rate = _RATE.fullmatch(text)
        if not rate:
            raise ScheduleError(
                f"invalid schedule {text!r}: write rate(<number> <unit>), e.g. rate(5 minutes)"
            )
        try:
            interval = parse_duration(f"{rate.group(1)} {rate.group(2).lower()}")
        except (ValueError, OverflowError) as error:
            raise ScheduleError(f"invalid schedule {text!r}: {error}") from error
        return IntervalSchedule(text, zone, interval)
    if lowered.startswith("cron("):
        return _parse_aws_cron(text, zone, seed, dst)
    if lowered.startswith("at "):
        return OneOffSchedule(text, zone, _parse_instant(text[3:], zone, text))
    repeating = _REPEATING.fullmatch(text)
    if repeating:
        count, start, period = repeating.groups()
        if count and int(count) == 0:
            raise ScheduleError(f"invalid schedule {text!r}: R0 never runs; use R1 for once")
        try:
            duration = _parse_iso_duration(period, text)
        except OverflowError as error:
            raise ScheduleError(f"invalid schedule {text!r}: period too long") from error
        return RepeatingSchedule(
            text, zone, _parse_instant(start, zone, text), duration, int(count) if count else None
        )
    if lowered.startswith("r") and "/" in text:
        raise ScheduleError(
            f"invalid schedule {text!r}: an ISO 8601 repeating interval is "
            "R[n]/<start>/<duration>, e.g. R/2027-01-01T00:00:00Z/PT1H"
        )
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
    return CronSchedule(text, zone, _expand_h(text, fields, seed), dst)


# --- H: a deterministic per-job spread -----------------------------------------------------

# The values ``H`` picks from in each field when no range is given (day-of-month stops at 28
# so that every month has the chosen day), and the bounds an explicit ``H(a-b)`` must obey.
_H_DEFAULT = {
    "second": (0, 59),
    "minute": (0, 59),
    "hour": (0, 23),
    "day-of-month": (1, 28),
    "month": (1, 12),
    "day-of-week": (0, 6),
}
_H_LIMITS = {**_H_DEFAULT, "day-of-month": (1, 31)}
_H_ITEM = re.compile(r"H(?:\((\d+)-(\d+)\))?(?:/(\d+))?", re.IGNORECASE)


def _h_number(seed: str, field: str, item: int) -> int:
    """A stable number for ``seed`` (sha256, the same in every process and release)."""
    digest = hashlib.sha256(f"{seed}\x00{field}\x00{item}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _expand_h_item(expression: str, field: str, item: str, index: int, seed: str) -> str:
    match = _H_ITEM.fullmatch(item)
    if not match:
        raise ScheduleError(
            f"invalid cron expression {expression!r}: bad {field} field {item!r} "
            "(write H, H(a-b), H/n or H(a-b)/n)"
        )
    low, high = _H_DEFAULT[field]
    if match.group(1) is not None:
        low, high = int(match.group(1)), int(match.group(2))
        lowest, highest = _H_LIMITS[field]
        if not lowest <= low <= high <= highest:
            raise ScheduleError(
                f"invalid cron expression {expression!r}: bad {field} field {item!r} "
                f"(the range of H(a-b) must lie within {lowest}-{highest}, a <= b)"
            )
    number = _h_number(seed, field, index)
    if match.group(3) is None:
        return str(low + number % (high - low + 1))
    step = int(match.group(3))
    if step < 1:
        raise ScheduleError(
            f"invalid cron expression {expression!r}: bad {field} field {item!r} "
            "(the step of H/n must be at least 1)"
        )
    start = low + number % min(step, high - low + 1)
    # cronsim reads a one-value range with a step (5-5/1) as 5/1, from 5 to the end.
    return f"{start}-{high}/{step}" if start < high else str(start)


def _expand_h(expression: str, fields: Sequence[str], seed: str) -> str:
    """Cron ``fields`` with every ``H`` item replaced by the value ``seed`` picks."""
    names = _FIELD_NAMES if len(fields) == 6 else _FIELD_NAMES[1:]
    expanded = []
    for name, text in zip(names, fields, strict=True):
        if "H" not in text and "h" not in text:  # most fields: nothing to expand
            expanded.append(text)
            continue
        items = text.split(",")
        expanded.append(
            ",".join(
                _expand_h_item(expression, name, item, index, seed)
                if item[:1] in ("H", "h")
                else item
                for index, item in enumerate(items)
            )
        )
    return " ".join(expanded)


# --- AWS cron(min hour dom month dow year) ------------------------------------------------

_AWS_CRON = re.compile(r"cron\((.*)\)", re.IGNORECASE)
_AWS_YEARS = (1970, 2199)
_AWS_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week", "year")


def _aws_error(expression: str, detail: str) -> ScheduleError:
    return ScheduleError(f"invalid AWS schedule {expression!r}: {detail}")


def _aws_day_of_week(expression: str, text: str) -> str:
    """AWS numbers days 1-7 from Sunday; cron 0-6. Names and ``H`` stay as they are."""

    def shift(number: re.Match[str]) -> str:
        day = int(number.group())
        if not 1 <= day <= 7:
            raise _aws_error(
                expression,
                f"bad day-of-week field {text!r} (AWS numbers the days 1-7 = SUN-SAT, "
                "or use the names SUN-SAT)",
            )
        return str(day - 1)

    items = []
    for item in text.split(","):
        base, slash, step = item.partition("/")
        day, hash_sign, nth = base.partition("#")
        if day.upper() == "L":
            day = "7"  # AWS: a lone L is the last day of the week, Saturday
        items.append(re.sub(r"\d+", shift, day) + hash_sign + nth + slash + step)
    return ",".join(items)


def _aws_years(expression: str, text: str) -> frozenset[int] | None:
    if text == "*":
        return None
    low_limit, high_limit = _AWS_YEARS
    years: set[int] = set()
    for item in text.split(","):
        match = re.fullmatch(r"(\*|(\d{4})(?:-(\d{4}))?)(?:/(\d+))?", item)
        if not match:
            raise _aws_error(
                expression,
                f"bad year field {text!r} (write *, a year, a range such as 2027-2029, "
                "a list, or a step such as 2027-2035/2)",
            )
        if match.group(1) == "*":
            low, high = low_limit, high_limit
        else:
            low = int(match.group(2))
            high = int(match.group(3)) if match.group(3) else low
            if match.group(4) and not match.group(3):
                high = high_limit
        step = int(match.group(4)) if match.group(4) else 1
        if not low_limit <= low <= high <= high_limit or step < 1:
            raise _aws_error(
                expression,
                f"bad year field {text!r} (years run {low_limit}-{high_limit}, "
                "ranges low-high, steps at least 1)",
            )
        years.update(range(low, high + 1, step))
    return frozenset(years)


def _parse_aws_cron(text: str, zone: ZoneInfo, seed: str, dst: DstRules) -> Schedule:
    match = _AWS_CRON.fullmatch(text)
    fields = match.group(1).split() if match else []
    if len(fields) != 6:
        raise _aws_error(
            text,
            f"AWS cron takes 6 fields, cron(minute hour day-of-month month day-of-week "
            f"year), e.g. cron(0 12 * * ? *); got {len(fields)}",
        )
    minute, hour, day, month, weekday, year = fields
    for name, value in zip(_AWS_FIELDS, fields, strict=True):
        if "?" in value and (name not in ("day-of-month", "day-of-week") or value != "?"):
            raise _aws_error(
                text, f"bad {name} field {value!r} ('?' may only be the whole day field)"
            )
    if (day == "?") == (weekday == "?"):
        raise _aws_error(
            text,
            "exactly one of day-of-month and day-of-week must be '?' "
            "(e.g. cron(0 12 * * ? *) or cron(0 12 ? * MON-FRI *))",
        )
    day = "*" if day == "?" else day
    weekday = "*" if weekday == "?" else _aws_day_of_week(text, weekday)
    years = _aws_years(text, year)
    cron = CronSchedule(text, zone, _expand_h(text, [minute, hour, day, month, weekday], seed), dst)
    return AwsCronSchedule(text, zone, cron, years)


def _describe_years(years: frozenset[int]) -> str:
    ordered = sorted(years)
    spans: list[list[int]] = []
    for year in ordered:
        if spans and spans[-1][1] == year - 1:
            spans[-1][1] = year
        else:
            spans.append([year, year])
    words = [str(low) if low == high else f"{low}-{high}" for low, high in spans]
    return ", ".join(words)


@dataclass(frozen=True)
class AwsCronSchedule(Schedule):
    """AWS ``cron(min hour dom month dow year)``: a cron schedule on the job's wall clock,
    limited to the years of its sixth field (all of them when it is ``*``)."""

    expression: str
    zone: ZoneInfo
    cron: CronSchedule
    years: frozenset[int] | None

    def next_after(self, instant: datetime) -> datetime | None:
        cursor = instant
        while True:
            candidate = self.cron.next_after(cursor)
            if candidate is None or self.years is None:
                return candidate
            year = candidate.astimezone(self.zone).year
            if year in self.years:
                return candidate
            later = [allowed for allowed in self.years if allowed > year]
            if not later:
                return None
            # Resume just before the first wall-clock instant of the next allowed year.
            start = datetime(min(later), 1, 1, tzinfo=self.zone).astimezone(UTC)
            cursor = start - _MICROSECOND

    def describe(self) -> str:
        words = self.cron.describe()
        if self.years is not None:
            words += f", in {_describe_years(self.years)}"
        return words


# --- lists of schedules and start/end bounds ----------------------------------------------


@dataclass(frozen=True)
class UnionSchedule(Schedule):
    """Several schedules: fires at every instant of any of them, each instant once."""

    expression: str
    zone: ZoneInfo
    members: tuple[Schedule, ...]

    def next_after(self, instant: datetime) -> datetime | None:
        upcoming = [
            found for member in self.members if (found := member.next_after(instant)) is not None
        ]
        return min(upcoming, default=None)

    def describe(self) -> str:
        return "; ".join(member.describe() for member in self.members)


def _parse_union(expressions: list[str], timezone: str, seed: str, dst: DstRules) -> Schedule:
    if not expressions:
        raise ScheduleError("empty list of schedules: give at least one")
    zone = parse_timezone(timezone)
    members = []
    for number, expression in enumerate(expressions, start=1):
        try:
            members.append(parse_schedule(expression, timezone, seed=seed, dst=dst))
        except ScheduleError as error:
            raise ScheduleError(f"schedule {number} of {len(expressions)}: {error}") from error
    text = " | ".join(member.expression for member in members)
    return UnionSchedule(text, zone, tuple(members))


@dataclass(frozen=True)
class BoundedSchedule(Schedule):
    """A schedule with no instant before ``start`` nor after ``end`` (both included)."""

    expression: str
    zone: ZoneInfo
    inner: Schedule
    start: datetime | None
    end: datetime | None

    def __post_init__(self) -> None:
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ScheduleError(
                f"end {format_instant(self.end)} is before start {format_instant(self.start)}"
            )

    def next_after(self, instant: datetime) -> datetime | None:
        cursor = _utc(instant)
        if self.start is not None and cursor < self.start:
            cursor = self.start - _MICROSECOND
        upcoming = self.inner.next_after(cursor)
        if upcoming is None or (self.end is not None and upcoming > self.end):
            return None
        return upcoming

    def describe(self) -> str:
        words = self.inner.describe()
        if self.start is not None:
            words += f", from {format_instant(self.start)}"
        if self.end is not None:
            words += f", until {format_instant(self.end)}"
        return words


def bound_schedule(
    schedule: Schedule, start: datetime | None = None, end: datetime | None = None
) -> Schedule:
    """``schedule`` limited to ``[start, end]`` (aware instants; either may be None)."""
    if start is None and end is None:
        return schedule
    return BoundedSchedule(
        schedule.expression,
        schedule.zone,
        schedule,
        None if start is None else _utc(start),
        None if end is None else _utc(end),
    )


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
    """The schedule in words, naming the zone its wall-clock times are read in."""
    words = schedule.describe()
    if _on_wall_clock(schedule):
        rules = _dst_rules(schedule)
        extra = "" if rules is None or rules.is_default else f"; {rules.describe()}"
        words += f" ({schedule.zone.key}{extra})"
    return words


def _dst_rules(schedule: Schedule) -> DstRules | None:
    """The DST rules of the schedule's cron expressions (all alike when parsed together)."""
    if isinstance(schedule, CronSchedule):
        return schedule.dst
    if isinstance(schedule, AwsCronSchedule):
        return schedule.cron.dst
    if isinstance(schedule, BoundedSchedule):
        return _dst_rules(schedule.inner)
    if isinstance(schedule, UnionSchedule):
        found = (_dst_rules(member) for member in schedule.members)
        return next((rules for rules in found if rules is not None), None)
    return None


def _on_wall_clock(schedule: Schedule) -> bool:
    if isinstance(schedule, CronSchedule | AwsCronSchedule):
        return True
    if isinstance(schedule, BoundedSchedule):
        return _on_wall_clock(schedule.inner)
    if isinstance(schedule, UnionSchedule):
        return any(_on_wall_clock(member) for member in schedule.members)
    return False
