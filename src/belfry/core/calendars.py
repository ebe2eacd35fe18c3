"""Calendars: named sets of instants that let a job run only at some times, or never at some.

A calendar is read on the wall clock of its IANA zone. An instant belongs to it when its
local time falls on one of its ``dates``, within one of its ``ranges`` of dates, or inside
one of its ``weekly`` windows, or when it belongs to a calendar it ``include``s; and it never
belongs when it belongs to a calendar it ``exclude``s. Membership is decided on the real
instant's local time, so a window 09:00-17:00 is open 09:00-17:00 local on a DST-change day
too, and a window boundary skipped by a spring-forward gap takes effect right after the gap.

A ``CalendarGate`` applies a job's calendars to its occurrences: an occurrence inside one of
its ``exclude`` calendars, or outside all of its ``only`` calendars, is skipped, or with
``defer`` moved to the first allowed instant after it (DESIGN.md guarantee 2: every skip
has its reason).
"""

from __future__ import annotations

import difflib
import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    field_validator,
    model_validator,
)

from belfry.core.names import NAME_RULE, is_valid_name
from belfry.core.schedules import ScheduleError, format_instant, parse_timezone

__all__ = [
    "Calendar",
    "CalendarError",
    "CalendarGate",
    "CalendarSpec",
    "DateRange",
    "GateVerdict",
    "WeeklyWindow",
    "compile_calendars",
]

_DAY_NAMES = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_DAY_SECONDS = 86_400
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# next_allowed looks for candidate instants this much of the search at a time, so that the
# usual answer (the end of a holiday or a night) costs a few days of candidates, not two years.
_SEARCH_CHUNK = timedelta(days=2)
_SECOND = timedelta(seconds=1)


class CalendarError(ValueError):
    """A calendar definition or reference that cannot be used."""


# --- the specification users write --------------------------------------------------------


def _seconds(value: time) -> int:
    return value.hour * 3600 + value.minute * 60 + value.second


def _format_seconds(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}" + (f":{secs:02d}" if secs else "")


def _parse_wall_seconds(value: Any, *, allow_end_of_day: bool) -> int:
    """Seconds since midnight of ``"HH:MM"``/``"HH:MM:SS"`` (or a naive whole-second time)."""
    if isinstance(value, time):
        if value.tzinfo is not None or value.microsecond:
            raise ValueError(
                f"{value.isoformat()}: give a local time of day in whole seconds, without a zone"
            )
        return _seconds(value)
    last = "23:59:59 or 24:00" if allow_end_of_day else "23:59:59"
    hint = f"write HH:MM or HH:MM:SS, from 00:00 to {last}"
    match = _TIME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"not a time of day: {value!r} ({hint})")
    hours, minutes, secs = (int(part or 0) for part in match.groups())
    if allow_end_of_day and hours == 24 and minutes == 0 and secs == 0:
        return _DAY_SECONDS
    if hours > 23 or minutes > 59 or secs > 59:
        if hours == 24 and not allow_end_of_day:
            hint = "24:00 is only allowed in 'to'"
        raise ValueError(f"not a time of day: {value!r} ({hint})")
    return hours * 3600 + minutes * 60 + secs


def _to_start_time(value: Any) -> time:
    seconds = _parse_wall_seconds(value, allow_end_of_day=False)
    return time(seconds // 3600, seconds // 60 % 60, seconds % 60)


def _to_end_time(value: Any) -> time | None:
    if value is None:
        return None
    seconds = _parse_wall_seconds(value, allow_end_of_day=True)
    if seconds == _DAY_SECONDS:
        return None
    return time(seconds // 3600, seconds // 60 % 60, seconds % 60)


def _format_time(value: time) -> str:
    return _format_seconds(_seconds(value))


def _format_end_time(value: time | None) -> str:
    return "24:00" if value is None else _format_time(value)


def _to_date(value: Any) -> date:
    # pydantic would read a number as a Unix timestamp and a datetime as its date; a
    # calendar day is only ever written as a date.
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _DATE.fullmatch(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"not a date: {value!r} (write YYYY-MM-DD)")


def _check_name(value: str) -> str:
    if not is_valid_name(value):
        raise ValueError(f"{value!r}: {NAME_RULE}")
    return value


WallTime = Annotated[
    time,
    BeforeValidator(_to_start_time),
    PlainSerializer(_format_time, return_type=str, when_used="json"),
]
# ``None`` is 24:00, the end of the day (``datetime.time`` stops at 23:59:59.999999).
EndTime = Annotated[
    time | None,
    BeforeValidator(_to_end_time),
    PlainSerializer(_format_end_time, return_type=str, when_used="json"),
]
CalendarDate = Annotated[date, BeforeValidator(_to_date)]
CalendarName = Annotated[str, AfterValidator(_check_name)]


def _parse_day(token: str) -> int:
    name = token.strip().upper()
    if name in _DAY_NAMES:
        return _DAY_NAMES.index(name)
    close = difflib.get_close_matches(name, _DAY_NAMES, n=1)
    hint = f"did you mean {close[0]}?" if close else "use MON, TUE, WED, THU, FRI, SAT or SUN"
    raise ValueError(f"unknown day {token.strip()!r} ({hint})")


def _parse_days(days: str | Sequence[str]) -> frozenset[int]:
    """Weekdays (0 = Monday) of ``"MON-FRI"``, ``"SAT,SUN"``, ``["MON", "WED-FRI"]``; a
    range may wrap past Sunday (``FRI-MON``)."""
    items = [days] if isinstance(days, str) else list(days)
    found: set[int] = set()
    for item in items:
        for token in item.split(","):
            if not token.strip():
                raise ValueError(f"empty day in {item!r} (write e.g. MON-FRI or SAT,SUN)")
            first, dash, last = token.partition("-")
            low = _parse_day(first)
            high = _parse_day(last) if dash else low
            found.update((low + step) % 7 for step in range((high - low) % 7 + 1))
    if not found:
        raise ValueError("name at least one day, e.g. MON-FRI")
    return frozenset(found)


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, validate_by_name=True
    )


class DateRange(_Strict):
    """Whole local days from ``start`` to ``end``, both included (YAML keys ``from``/``to``)."""

    start: CalendarDate = Field(alias="from")
    end: CalendarDate = Field(alias="to")

    @field_validator("end")
    @classmethod
    def _not_before_start(cls, value: date, info: ValidationInfo) -> date:
        start = info.data.get("start")
        if start is not None and value < start:
            raise ValueError(f"{value.isoformat()} is before from {start.isoformat()}")
        return value


class WeeklyWindow(_Strict):
    """Every week, on ``days``, from ``start`` (included) to ``end`` (excluded) local time.

    ``end`` None is 24:00. An ``end`` not after ``start`` runs past midnight: the window
    ends at that time the next day.
    """

    days: str | list[str]
    start: WallTime = Field(default=time(0), alias="from")
    end: EndTime = Field(default=None, alias="to")

    @field_validator("days")
    @classmethod
    def _valid_days(cls, value: str | list[str]) -> str | list[str]:
        _parse_days(value)
        return value

    @property
    def weekdays(self) -> frozenset[int]:
        """The days, 0 = Monday."""
        return _parse_days(self.days)

    @property
    def start_second(self) -> int:
        return _seconds(self.start)

    @property
    def end_second(self) -> int:
        """Seconds since midnight; 86400 for 24:00."""
        return _DAY_SECONDS if self.end is None else _seconds(self.end)

    def describe(self) -> str:
        """``MON-FRI 09:00-17:30``."""
        days = self.days if isinstance(self.days, str) else ",".join(self.days)
        start, end = _format_time(self.start), _format_end_time(self.end)
        return f"{days} {start}-{end}" + (" (next day)" if self.wraps else "")

    @property
    def wraps(self) -> bool:
        """True when the window runs past midnight into the next day."""
        return self.end_second <= self.start_second


class CalendarSpec(_Strict):
    """A calendar as users write it in YAML and send to the API."""

    name: str
    # The wall clock ``dates``, ``ranges`` and ``weekly`` are read on.
    timezone: str = "UTC"
    description: str = ""
    dates: list[CalendarDate] = Field(default_factory=list)
    ranges: list[DateRange] = Field(default_factory=list)
    weekly: list[WeeklyWindow] = Field(default_factory=list)
    include: list[CalendarName] = Field(default_factory=list)
    exclude: list[CalendarName] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not is_valid_name(value):
            raise ValueError(NAME_RULE)
        return value

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        try:
            parse_timezone(value)
        except ScheduleError as error:
            raise ValueError(str(error)) from None
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> CalendarSpec:
        if not (self.dates or self.ranges or self.weekly or self.include):
            raise ValueError("a calendar needs dates, ranges, weekly windows or include")
        return self

    def to_document(self) -> dict[str, Any]:
        """The spec as JSON-ready data, without defaults, keyed as users write it."""
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=True)


# --- compiled calendars -------------------------------------------------------------------


# Sorted disjoint half-open spans ``[starts[i], ends[i])``.
_Spans = tuple[tuple[int, ...], tuple[int, ...]]


def _require_aware(instant: datetime) -> None:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("naive datetime: Belfry only computes with aware instants")


def _merge(spans: Iterable[tuple[int, int]]) -> _Spans:
    """Half-open ``[start, end)`` spans merged into sorted disjoint ones, as (starts, ends)."""
    starts: list[int] = []
    ends: list[int] = []
    for start, end in sorted(spans):
        if starts and start <= ends[-1]:
            ends[-1] = max(ends[-1], end)
        else:
            starts.append(start)
            ends.append(end)
    return tuple(starts), tuple(ends)


def _within(spans: _Spans, value: int) -> bool:
    starts, ends = spans
    index = bisect_right(starts, value) - 1
    return index >= 0 and value < ends[index]


@dataclass(frozen=True, eq=False)
class Calendar:
    """A compiled calendar: cheap membership tests on precomputed spans."""

    name: str
    zone: ZoneInfo
    # Local dates as ordinals, and ``ranges`` merged into half-open ordinal spans.
    dates: frozenset[int]
    ranges: _Spans
    # Per weekday (0 = Monday), the weekly windows as merged half-open second spans, a
    # window past midnight split into its two days.
    windows: tuple[_Spans, ...]
    include: tuple[Calendar, ...] = ()
    exclude: tuple[Calendar, ...] = ()

    def contains(self, instant: datetime) -> bool:
        """True when the aware ``instant`` belongs to the calendar."""
        _require_aware(instant)
        return self._holds(instant)

    def _holds(self, instant: datetime) -> bool:
        local = instant.astimezone(self.zone)
        day = local.toordinal()
        inside = (
            day in self.dates
            or _within(self.ranges, day)
            or _within(
                self.windows[local.weekday()],
                local.hour * 3600 + local.minute * 60 + local.second,
            )
            or any(member._holds(instant) for member in self.include)
        )
        return inside and not any(member._holds(instant) for member in self.exclude)

    def boundaries(self, weekday: int) -> tuple[int, ...]:
        """Local seconds of day at which membership may change (ignoring include/exclude)
        on a day with this weekday: midnight, where dates and ranges change, and the ends
        of its window spans."""
        starts, ends = self.windows[weekday]
        return tuple(sorted({0, *starts, *ends} - {_DAY_SECONDS}))


def _compile(
    spec: CalendarSpec, include: tuple[Calendar, ...], exclude: tuple[Calendar, ...]
) -> Calendar:
    per_day: list[list[tuple[int, int]]] = [[] for _ in range(7)]
    for window in spec.weekly:
        start, end = window.start_second, window.end_second
        for weekday in window.weekdays:
            if end > start:
                per_day[weekday].append((start, end))
            else:
                per_day[weekday].append((start, _DAY_SECONDS))
                if end > 0:
                    per_day[(weekday + 1) % 7].append((0, end))
    return Calendar(
        name=spec.name,
        zone=parse_timezone(spec.timezone),
        dates=frozenset(day.toordinal() for day in spec.dates),
        ranges=_merge((span.start.toordinal(), span.end.toordinal() + 1) for span in spec.ranges),
        windows=tuple(_merge(spans) for spans in per_day),
        include=include,
        exclude=exclude,
    )


def _unknown(owner: str, field: str, name: str, known: Sequence[str]) -> CalendarError:
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        hint = f"did you mean {close[0]}?"
    elif known:
        hint = f"known: {', '.join(sorted(known))}"
    else:
        hint = "no calendars are defined"
    return CalendarError(f"calendars[{owner}].{field}: unknown calendar {name!r} ({hint})")


def compile_calendars(specs: Sequence[CalendarSpec]) -> dict[str, Calendar]:
    """The calendars by name, with ``include``/``exclude`` resolved.

    CalendarError names the field at fault: a duplicate name, a reference to an unknown
    calendar, or a calendar that includes or excludes itself, directly or not.
    """
    by_name: dict[str, CalendarSpec] = {}
    positions: dict[str, int] = {}
    for position, spec in enumerate(specs, start=1):
        if spec.name in by_name:
            raise CalendarError(
                f"calendars[{spec.name}].name: duplicate calendar name {spec.name!r} "
                f"(calendars {positions[spec.name]} and {position})"
            )
        by_name[spec.name] = spec
        positions[spec.name] = position
    names = list(by_name)
    for spec in specs:
        for field, references in (("include", spec.include), ("exclude", spec.exclude)):
            for reference in references:
                if reference not in by_name:
                    raise _unknown(spec.name, field, reference, names)

    compiled: dict[str, Calendar] = {}
    # The calendars being compiled, in order, with the field that led to the next one.
    path: list[tuple[str, str]] = []

    def build(name: str) -> Calendar:
        if name in compiled:
            return compiled[name]
        on_path = [entry for entry, _ in path]
        if name in on_path:
            cycle = path[on_path.index(name) :]
            start, field = cycle[0]
            verb = "includes" if field == "include" else "excludes"
            chain = " -> ".join([*(entry for entry, _ in cycle), name])
            raise CalendarError(f"calendars[{start}].{field}: {start} {verb} itself ({chain})")
        spec = by_name[name]
        members: dict[str, list[Calendar]] = {"include": [], "exclude": []}
        for field, references in (("include", spec.include), ("exclude", spec.exclude)):
            for reference in references:
                path.append((name, field))
                members[field].append(build(reference))
                path.pop()
        compiled[name] = _compile(spec, tuple(members["include"]), tuple(members["exclude"]))
        return compiled[name]

    for name in names:
        build(name)
    return {name: compiled[name] for name in names}


# --- applying calendars to a job's occurrences --------------------------------------------


@dataclass(frozen=True)
class GateVerdict:
    """What becomes of an occurrence: it runs at ``start_at`` (its own instant, or a later
    one when deferred), or is skipped (``start_at`` None) for ``reason``."""

    start_at: datetime | None
    reason: str | None

    @property
    def skipped(self) -> bool:
        return self.start_at is None

    @property
    def deferred(self) -> bool:
        return self.start_at is not None and self.reason is not None


def _reachable(roots: Sequence[Calendar]) -> list[Calendar]:
    seen: dict[int, Calendar] = {}
    pending = list(roots)
    while pending:
        calendar = pending.pop()
        if id(calendar) not in seen:
            seen[id(calendar)] = calendar
            pending.extend(calendar.include)
            pending.extend(calendar.exclude)
    return list(seen.values())


def _wall(day: date, seconds: int) -> datetime:
    return datetime.combine(day, time(seconds // 3600, seconds // 60 % 60, seconds % 60))


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta | None:
    return instant.astimezone(zone).utcoffset()


@dataclass(frozen=True)
class _ZoneBoundaries:
    """Every local second of day at which some calendar read in ``zone`` may change."""

    zone: ZoneInfo
    per_weekday: tuple[tuple[int, ...], ...]

    def candidates(self, day: date) -> Iterator[datetime]:
        """Real instants at which membership may change during local ``day``."""
        for seconds in self.per_weekday[day.weekday()]:
            wall = _wall(day, seconds)
            # A repeated wall time happens at two instants (fold 0 and 1); a wall time in a
            # gap at neither, and the offset change below stands in for it.
            yield wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
            yield wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        change = self._offset_change(day)
        if change is not None:
            yield change

    def _offset_change(self, day: date) -> datetime | None:
        """The instant during ``day`` at which the zone changes its UTC offset, to the
        second (tzdata's changes are whole seconds, at most one a day)."""
        low = _wall(day, 0).replace(tzinfo=self.zone).astimezone(UTC)
        high = _wall(day + timedelta(days=1), 0).replace(tzinfo=self.zone).astimezone(UTC)
        before = _offset(self.zone, low)
        if before == _offset(self.zone, high):
            return None
        while high - low > _SECOND:
            middle = low + (high - low) // 2
            middle -= timedelta(microseconds=middle.microsecond)
            if _offset(self.zone, middle) == before:
                low = middle
            else:
                high = middle
        return high


class CalendarGate:
    """A job's calendars: never in any of ``exclude``, only in one of ``only`` (when given);
    a blocked occurrence is skipped, or with ``defer`` moved to the next allowed instant."""

    def __init__(self, exclude: Sequence[Calendar], only: Sequence[Calendar], defer: bool) -> None:
        self.exclude = tuple(exclude)
        self.only = tuple(only)
        self.defer = defer
        seconds: dict[ZoneInfo, list[set[int]]] = {}
        for calendar in _reachable([*self.exclude, *self.only]):
            days = seconds.setdefault(calendar.zone, [set() for _ in range(7)])
            for weekday in range(7):
                days[weekday].update(calendar.boundaries(weekday))
        self._zones = tuple(
            _ZoneBoundaries(zone, tuple(tuple(sorted(day)) for day in days))
            for zone, days in seconds.items()
        )

    @property
    def is_open(self) -> bool:
        """True when the gate has no calendars: every instant passes."""
        return not self.exclude and not self.only

    def blocker(self, instant: datetime) -> str | None:
        """The name of the calendar that rules ``instant`` out: the first ``exclude``
        calendar containing it; else, when ``only`` is given and none of its calendars
        contains it, the first ``only`` calendar's name; else None."""
        _require_aware(instant)
        for calendar in self.exclude:
            if calendar._holds(instant):
                return calendar.name
        if self.only and not any(calendar._holds(instant) for calendar in self.only):
            return self.only[0].name
        return None

    def next_allowed(
        self, instant: datetime, within: timedelta = timedelta(days=732)
    ) -> datetime | None:
        """The first instant at or after ``instant`` that is not blocked, exact to the
        second, in UTC; None if there is none within ``within``.

        Membership only changes where a calendar's local time reaches one of its
        boundaries (midnight, a window's from or to), or where its zone changes offset.
        Those candidate instants are checked in order, a few days at a time.
        """
        _require_aware(instant)
        start = instant.astimezone(UTC)
        if self.blocker(start) is None:
            return start
        try:
            limit = start + within
        except OverflowError:
            limit = datetime.max.replace(tzinfo=UTC)
        low = start
        try:
            while low < limit:
                high = min(low + _SEARCH_CHUNK, limit)
                for candidate in sorted(self._candidates(low, high)):
                    if self.blocker(candidate) is None:
                        return candidate
                low = high
        except OverflowError:  # past the end of datetime: nothing is allowed there
            return None
        return None

    def _candidates(self, low: datetime, high: datetime) -> set[datetime]:
        """Instants in ``(low, high]`` at which the gate may open."""
        found: set[datetime] = set()
        for zone in self._zones:
            # A day either side too: a DST change near midnight can move a local day's
            # wall times (as fold 0 or 1) across its neighbours'.
            day = low.astimezone(zone.zone).date() - timedelta(days=1)
            last = high.astimezone(zone.zone).date() + timedelta(days=1)
            while day <= last:
                found.update(
                    candidate for candidate in zone.candidates(day) if low < candidate <= high
                )
                day += timedelta(days=1)
        return found

    def judge(self, instant: datetime, following: datetime | None) -> GateVerdict:
        """What becomes of the occurrence at ``instant``, whose schedule's next occurrence
        is ``following`` (None when there is none).

        Deferred occurrences coalesce: when the following occurrence comes no later than
        the first allowed instant, this one is skipped in its favour, so an excluded
        stretch yields at most one deferred run (none if it ends on an occurrence).
        """
        name = self.blocker(instant)
        if name is None:
            return GateVerdict(instant.astimezone(UTC), None)
        if not self.defer:
            return GateVerdict(None, f"calendar:{name}")
        allowed = self.next_allowed(instant)
        if allowed is None:
            return GateVerdict(
                None, f"calendar:{name} (no allowed time within 2 years to defer to)"
            )
        if following is not None and following <= allowed:
            return GateVerdict(None, f"calendar:{name} (deferred into a later occurrence)")
        return GateVerdict(allowed, f"calendar:{name}: deferred from {format_instant(instant)}")
