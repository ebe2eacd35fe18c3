"""Cron fields on a naive wall clock: which wall-clock times match, and the next one.

cronsim parses the fields and decides which days match (``L``, ``LW``, ``5L``, ``MON#2``,
and Debian's rule that day-of-month and day-of-week are OR-ed when both are restricted).
Stepping from one match to the next is done here: it jumps straight to the next matching
hour, minute and second, where cronsim ticks through them one at a time, and it parses an
expression once, where cronsim parses it for every iterator. The answers are cronsim's
(tests/core/test_cron_fields.py compares them).

Day-of-month also takes Quartz's ``nW`` (n = 1..31): the weekday (Monday-Friday) nearest day
n of the month, never crossing into another month (``1W`` on a Saturday is Monday the 3rd,
``31W`` on a Sunday is Friday the 29th). A month without day n has no such day (``31W`` never
runs in April), as ``31`` would not; Quartz leaves that case to a lenient calendar, which
rolls April 31 over into May, against its own rule of never leaving the month. ``nW`` must
be the whole field, and day-of-week must be ``*``: cron runs on the days that match either
day field when both are restricted, which would add every matching weekday to the nearest
weekday.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import MAXYEAR, UTC, date, datetime
from functools import lru_cache

from cronsim import CronSim

__all__ = ["CronFieldError", "CronFields", "nearest_weekday", "parse_cron_fields"]

_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# cronsim stops looking after 50 years without a match; so does next_wall, alike.
_GIVE_UP_YEARS = 50
_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)
_NEAREST = re.compile(r"(\d+)W", re.IGNORECASE)


class CronFieldError(ValueError):
    """A cron field cronsim would take apart but Belfry rejects; the message names it."""


def _days_in_month(year: int, month: int) -> int:
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return 29
    return _DAYS_IN_MONTH[month]


def nearest_weekday(year: int, month: int, day: int) -> int | None:
    """The day of the month of the weekday nearest ``day`` (Quartz's ``nW``), without
    leaving the month; None when the month has no day ``day``."""
    last = _days_in_month(year, month)
    if day > last:
        return None
    weekday = date(year, month, day).weekday()
    if weekday == 5:  # Saturday: the Friday before, or Monday the 3rd for the 1st
        return day + 2 if day == 1 else day - 1
    if weekday == 6:  # Sunday: the Monday after, or the Friday before for the last day
        return day - 2 if day == last else day + 1
    return day


@dataclass(frozen=True, eq=False, slots=True)
class CronFields:
    """Parsed cron fields (5, or 6 with seconds first): build with parse_cron_fields."""

    text: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: tuple[int, ...]
    # n of a day-of-month ``nW``; None otherwise.
    nearest: int | None
    # Day-of-month and day-of-week both ``*``: every day matches, no need to ask cronsim.
    every_day: bool
    # Shortcuts past cronsim's day matching for the common forms: plain days of the month
    # with day-of-week ``*`` (sorted), or plain days of the week (0-6, Sunday 0) with
    # day-of-month ``*``. None when the fields use L, W, # or both restrict the day.
    month_days: tuple[int, ...] | None
    weekdays: tuple[int, ...] | None
    # Debian's fixed-time job: the minute and hour fields do not start with ``*``.
    fixed_time: bool
    # cronsim's parse, for the other day rules; None when a shortcut applies.
    sim: CronSim | None

    def matches_day(self, day: date) -> bool:
        if self.every_day:
            return True
        if self.nearest is not None:
            return day.day == nearest_weekday(day.year, day.month, self.nearest)
        if self.month_days is not None:
            return day.day in self.month_days
        if self.weekdays is not None:
            return day.isoweekday() % 7 in self.weekdays
        assert self.sim is not None  # kept whenever no shortcut applies
        return bool(self.sim.match_day(day))

    def _next_day(self, year: int, month: int, day: int) -> int | None:
        """The first matching day of the month after ``day``; None if none is left."""
        if self.nearest is not None:
            target = nearest_weekday(year, month, self.nearest)
            return target if target is not None and target > day else None
        last = _days_in_month(year, month)
        if self.month_days is not None:
            index = bisect_right(self.month_days, day)
            if index < len(self.month_days) and self.month_days[index] <= last:
                return self.month_days[index]
            return None
        for later in range(day + 1, last + 1):
            if self.matches_day(date(year, month, later)):
                return later
        return None

    def next_wall(self, wall: datetime) -> datetime | None:
        """The first matching wall-clock time strictly after ``wall``, in whole seconds and
        with ``wall``'s tzinfo (read as a label only); None after 50 years without one."""
        # One second on, dropping microseconds; a second of 60 is carried below.
        year, month, day = wall.year, wall.month, wall.day
        hour, minute, second = wall.hour, wall.minute, wall.second + 1
        hours, minutes, seconds, months = self.hours, self.minutes, self.seconds, self.months
        limit = min(year + _GIVE_UP_YEARS, MAXYEAR)
        # Each pass either returns or moves to the first candidate of a later month, day,
        # hour or minute (resetting the smaller fields), so the answer is the first match.
        while True:
            if year > limit:
                return None
            index = bisect_left(months, month)
            if index == len(months):
                year, month, day, hour, minute, second = year + 1, months[0], 1, 0, 0, 0
                continue
            if months[index] != month:
                month, day, hour, minute, second = months[index], 1, 0, 0, 0
            if not self.every_day and not self.matches_day(date(year, month, day)):
                later = self._next_day(year, month, day)
                if later is None:
                    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
                    day, hour, minute, second = 1, 0, 0, 0
                    continue
                day, hour, minute, second = later, 0, 0, 0
            index = bisect_left(hours, hour)
            if index == len(hours):  # no hour left that day: the next day, from 00:00:00
                if day < _days_in_month(year, month):
                    day += 1
                else:
                    year, month, day = (year + 1, 1, 1) if month == 12 else (year, month + 1, 1)
                hour, minute, second = 0, 0, 0
                continue
            if hours[index] != hour:
                hour, minute, second = hours[index], 0, 0
            index = bisect_left(minutes, minute)
            if index == len(minutes):  # the next hour (24:00 is the next day, just above)
                hour, minute, second = hour + 1, 0, 0
                continue
            if minutes[index] != minute:
                minute, second = minutes[index], 0
            index = bisect_left(seconds, second)
            if index == len(seconds):  # the next minute (minute 60 is the next hour)
                minute, second = minute + 1, 0
                continue
            return datetime(year, month, day, hour, minute, seconds[index], tzinfo=wall.tzinfo)

    def walls(self, wall: datetime) -> Iterator[datetime]:
        """Every matching wall-clock time strictly after ``wall``, in order."""
        found = self.next_wall(wall)
        while found is not None:
            yield found
            found = self.next_wall(found)


# A range of one value with a step, ``5-5/2`` (or ``MON-MON/2``): cron reads it as that one
# value; cronsim would read it as ``5/2``, from 5 to the end of the field.
_SINGLE_RANGE = re.compile(r"([0-9a-z]+)-\1/\d+", re.IGNORECASE)


def _collapse_single_ranges(field: str) -> str:
    if "-" not in field:
        return field
    return ",".join(
        match.group(1) if (match := _SINGLE_RANGE.fullmatch(item)) else item
        for item in field.split(",")
    )


@lru_cache(maxsize=4096)
def parse_cron_fields(fields: str) -> CronFields:
    """Parse 5 or 6 cron fields. Raises cronsim's errors for what cronsim rejects (the
    caller turns them into messages naming the field) and CronFieldError for misused
    ``nW``. Cached: thousands of jobs share a handful of expressions."""
    parts = [_collapse_single_ranges(part) for part in fields.split()]
    nearest = None
    if len(parts) in (5, 6):
        day_field, weekday_field = parts[-3], parts[-1]
        single = _NEAREST.fullmatch(day_field)
        if single:
            if weekday_field not in ("*", "?"):  # '?' gets cronsim's Quartz hint
                raise CronFieldError(
                    f"day-of-month {day_field!r} needs day-of-week '*' (or '?' in AWS cron), "
                    f"not {weekday_field!r}: cron runs on the days either field matches"
                )
            # Validate n (1-31, and a day some chosen month has) as a plain day.
            CronSim(" ".join([*parts[:-3], single.group(1), *parts[-2:]]), _ORIGIN)
            nearest = int(single.group(1))
            parts[-3] = "*"
        elif _NEAREST.search(day_field):
            raise CronFieldError(
                f"bad day-of-month field {day_field!r} (nW takes a single day, e.g. 15W, "
                "not a list, range or step)"
            )
    sim = CronSim(" ".join(parts), _ORIGIN)
    every_day = nearest is None and parts[-3] == "*" and parts[-1] == "*"
    plain_days = (
        nearest is None
        and parts[-1] == "*"
        and all(isinstance(value, int) and value > 0 for value in sim.days)
    )
    plain_weekdays = parts[-3] == "*" and all(isinstance(value, int) for value in sim.weekdays)
    weekdays = {value % 7 for value in sim.weekdays if isinstance(value, int)}
    return CronFields(
        text=fields,
        seconds=_shared(tuple(sorted(sim.seconds))),
        minutes=_shared(tuple(sorted(sim.minutes))),
        hours=_shared(tuple(sorted(sim.hours))),
        months=_shared(tuple(sorted(sim.months))),
        nearest=nearest,
        every_day=every_day,
        month_days=_shared(tuple(sorted(sim.days))) if plain_days else None,
        weekdays=_shared(tuple(sorted(weekdays))) if plain_weekdays else None,
        fixed_time=not parts[-5].startswith("*") and not parts[-4].startswith("*"),
        # Kept only for the day rules the shortcuts above do not cover.
        sim=None if every_day or nearest is not None or plain_days or plain_weekdays else sim,
    )


@lru_cache(maxsize=4096)
def _shared(values: tuple[int, ...]) -> tuple[int, ...]:
    """One tuple for equal values: with H, 100,000 jobs may have 100,000 distinct
    expressions, but not many distinct fields."""
    return values
