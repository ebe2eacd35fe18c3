"""Schedules against an independent oracle, over random instants, zones and expressions.

The oracle enumerates wall-clock times field by field (no cronsim) and maps them to real
instants with Debian cron's rules (DESIGN.md guarantee 6):

* fixed-time expressions (minute and hour fields not starting with ``*``): a wall time
  inside a spring-forward gap runs at the first real minute after the gap, a repeated
  wall time runs once, in its first pass;
* every other expression: every real instant whose wall time matches.

Comparing the whole list of instants in a window checks, at once, that they strictly
increase, that each matches its expression, and that none is skipped or repeated.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from zone_changes import offset_changes, utc_offset

from belfry.core.schedules import ScheduleError, parse_schedule

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "America/Sao_Paulo",
    "Pacific/Chatham",
    "Europe/London",
    "Asia/Tehran",
]

# Expression -> a window long enough to hold a few dozen to a few hundred instants.
EXPRESSIONS = {
    "30 2 * * *": timedelta(days=20),
    "0 0 * * *": timedelta(days=20),
    "45 23 * * *": timedelta(days=20),
    "45 2 * * 1-5": timedelta(days=20),
    "15 1,2,3 * * *": timedelta(days=10),
    "0,30 1-3 * * *": timedelta(days=10),
    "0 0-23/3 * * *": timedelta(days=10),
    "0 9-17 * * MON-FRI": timedelta(days=10),
    "0 0 1 * *": timedelta(days=400),
    "5 4 * * SUN": timedelta(days=100),
    "0 0 13 * FRI": timedelta(days=200),
    "10 30 2 * * *": timedelta(days=20),
    "*/15 * * * *": timedelta(days=2),
    "0 */2 * * *": timedelta(days=8),
    "*/20 2 * * *": timedelta(days=10),
    "30 * * * *": timedelta(days=4),
    "* * * * *": timedelta(hours=3),
    "*/20 * * * * *": timedelta(hours=1),
    "0 */7 * * * *": timedelta(days=1),
}
DAILY = ["30 2 * * *", "0 0 * * *", "45 23 * * *", "10 30 2 * * *"]

_MONTH_NAMES = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}
_DAYS = {
    name: number for number, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])
}


def _values(text: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    def value(token: str) -> int:
        return names[token] if token in names else int(token)

    result: set[int] = set()
    for term in text.upper().split(","):
        term, _, step_text = term.partition("/")
        step = int(step_text) if step_text else 1
        if term == "*":
            first, last = low, high
        elif "-" in term:
            start, end = term.split("-")
            first, last = value(start), value(end)
        else:
            first = value(term)
            last = high if step_text else first
        result.update(range(first, last + 1, step))
    return result


@dataclass(frozen=True)
class Oracle:
    expression: str

    @property
    def parts(self) -> list[str]:
        parts = self.expression.split()
        return parts if len(parts) == 6 else ["0", *parts]

    @property
    def fixed_time(self) -> bool:
        return not self.parts[1].startswith("*") and not self.parts[2].startswith("*")

    def day_matches(self, day: date) -> bool:
        parts = self.parts
        if day.month not in _values(parts[4], 1, 12, _MONTHS):
            return False
        dom = day.day in _values(parts[3], 1, 31, {})
        dow = day.isoweekday() % 7 in {d % 7 for d in _values(parts[5], 0, 7, _DAYS)}
        if parts[3].startswith("*") or parts[5].startswith("*"):
            return dom and dow
        return dom or dow

    def matches(self, wall: datetime) -> bool:
        parts = self.parts
        return (
            wall.second in _values(parts[0], 0, 59, {})
            and wall.minute in _values(parts[1], 0, 59, {})
            and wall.hour in _values(parts[2], 0, 23, {})
            and self.day_matches(wall.date())
        )

    def walls(self, first: datetime, last: datetime) -> Iterator[datetime]:
        """Matching naive wall times in ``[first, last]``, in order."""
        parts = self.parts
        seconds = sorted(_values(parts[0], 0, 59, {}))
        minutes = sorted(_values(parts[1], 0, 59, {}))
        hours = sorted(_values(parts[2], 0, 23, {}))
        day = first.date()
        while day <= last.date():
            if self.day_matches(day):
                for hour in hours:
                    for minute in minutes:
                        for second in seconds:
                            wall = datetime(day.year, day.month, day.day, hour, minute, second)
                            if first <= wall <= last:
                                yield wall
            day += timedelta(days=1)

    def instants(self, zone: ZoneInfo, lower: datetime, upper: datetime) -> list[datetime]:
        """Every instant in ``(lower, upper]``, per Debian's rules."""
        offsets = [utc_offset(zone, lower), utc_offset(zone, upper)]
        margin = timedelta(hours=3)
        first = (lower + min(offsets) - margin).replace(tzinfo=None)
        last = (upper + max(offsets) + margin).replace(tzinfo=None)
        found: set[datetime] = set()
        for wall in self.walls(first, last):
            if self.fixed_time:
                moved = wall
                if not _real(zone, wall):  # in a gap: the first real minute after it
                    moved = wall.replace(second=0)
                    while not _real(zone, moved):
                        moved += timedelta(minutes=1)
                found.add(moved.replace(tzinfo=zone, fold=0).astimezone(UTC))
            else:
                for fold in (0, 1):
                    instant = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
                    if instant.astimezone(zone).replace(tzinfo=None) == wall:
                        found.add(instant)
        return sorted(instant for instant in found if lower < instant <= upper)


def _real(zone: ZoneInfo, wall: datetime) -> bool:
    instant = wall.replace(tzinfo=zone).astimezone(UTC)
    return instant.astimezone(zone).replace(tzinfo=None) == wall


@st.composite
def starts(draw: st.DrawFn, zone_name: str) -> datetime:
    """A UTC instant in 2000-2040: anywhere, or within a day or two of a DST change."""
    year = draw(st.integers(2000, 2040))
    changes = offset_changes(zone_name, year)
    near_a_change = draw(st.booleans())
    if changes and near_a_change:
        change = draw(st.sampled_from(changes))
        before = draw(st.integers(-3 * 86400, 3600))
        micro = draw(st.sampled_from([0, 0, 1, 999_999]))
        return change + timedelta(seconds=before, microseconds=micro)
    moment = draw(
        st.datetimes(datetime(year, 1, 1), datetime(year, 12, 31, 23, 59, 59), timezones=st.none())
    )
    return moment.replace(tzinfo=UTC)


def _walk(expression: str, zone_name: str, lower: datetime, upper: datetime) -> list[datetime]:
    schedule = parse_schedule(expression, zone_name)
    instants: list[datetime] = []
    cursor = lower
    while (upcoming := schedule.next_after(cursor)) is not None and upcoming <= upper:
        assert upcoming > cursor, (cursor, upcoming)
        assert upcoming.tzinfo is UTC
        instants.append(upcoming)
        cursor = upcoming
    return instants


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.sampled_from(ZONES), st.sampled_from(sorted(EXPRESSIONS)))
def test_cron_instants_match_the_oracle(
    data: st.DataObject, zone_name: str, expression: str
) -> None:
    lower = data.draw(starts(zone_name), label="lower")
    upper = lower + EXPRESSIONS[expression]
    zone = ZoneInfo(zone_name)
    expected = Oracle(expression).instants(zone, lower, upper)
    assert _walk(expression, zone_name, lower, upper) == expected
    # next_after from any instant, not only from the previous instant, finds the next one.
    schedule = parse_schedule(expression, zone_name)
    for fraction in data.draw(st.lists(st.floats(0, 1), min_size=1, max_size=3), label="at"):
        probe = lower + (upper - lower) * fraction
        following = [instant for instant in expected if instant > probe]
        if following:
            assert schedule.next_after(probe) == following[0]


@settings(max_examples=80, deadline=None)
@given(st.data(), st.sampled_from(ZONES), st.sampled_from(DAILY))
def test_fixed_time_daily_jobs_run_exactly_once_per_local_day(
    data: st.DataObject, zone_name: str, expression: str
) -> None:
    lower = data.draw(starts(zone_name), label="lower")
    instants = _walk(expression, zone_name, lower, lower + timedelta(days=60))
    days = [instant.astimezone(ZoneInfo(zone_name)).date() for instant in instants]
    assert len(days) >= 58
    assert all(b - a == timedelta(days=1) for a, b in pairwise(days)), days


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(ZONES),
    st.sampled_from(["every 90s", "every 1h30m", "every 7m", "rate(5 minutes)", "every 1d"]),
    st.datetimes(datetime(2000, 1, 1), datetime(2040, 12, 31), timezones=st.none()),
)
def test_intervals_are_multiples_since_the_epoch(
    zone_name: str, expression: str, start: datetime
) -> None:
    schedule = parse_schedule(expression, zone_name)
    interval = schedule.interval  # type: ignore[attr-defined]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    lower = start.replace(tzinfo=UTC)
    instants = _walk(expression, zone_name, lower, lower + 20 * interval)
    assert len(instants) == 20
    assert all((instant - epoch) % interval == timedelta() for instant in instants)
    assert instants[0] - interval <= lower < instants[0]
    assert all(b - a == interval for a, b in pairwise(instants))


FUZZ_ALPHABET = "0123456789*/,-LW#? MONTUESUNJANFEBDEC@"


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(FUZZ_ALPHABET, max_size=30),
        st.lists(
            st.one_of(
                st.sampled_from(["*", "*/5", "1-5", "L", "5L", "MON#2", "LW", "0", "59", "SUN"]),
                st.from_regex(r"\A[0-9]{1,2}([-/,][0-9]{1,2})?\Z"),
            ),
            min_size=5,
            max_size=6,
        ).map(" ".join),
    ),
    st.sampled_from(ZONES),
    st.datetimes(datetime(2000, 1, 1), datetime(2040, 12, 31), timezones=st.none()),
)
def test_any_text_parses_or_raises_schedule_error(
    text: str, zone_name: str, start: datetime
) -> None:
    try:
        schedule = parse_schedule(text, zone_name)
    except ScheduleError as error:
        assert str(error)
        return
    lower = start.replace(tzinfo=UTC)
    upcoming = schedule.next_after(lower)
    assert upcoming is None or upcoming > lower
