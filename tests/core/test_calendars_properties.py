"""Calendar gates against an independent oracle, over random calendars, zones and instants.

The oracle reads each calendar directly from its definition (no spans, no bisection):
an instant is in a calendar when its local date is one of the dates or within a range, or
its local weekday and second of day fall in a weekly window (one past midnight covers the
next day's early hours), or it is in an included calendar; and it is in no excluded one.
``next_allowed`` is checked against a walk over every minute (every second within the
minutes that hold a boundary with seconds) until the first allowed instant.

Instants are drawn around the zones' 2027 DST changes, where the wall clock jumps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from zone_changes import offset_changes

from belfry.core.calendars import CalendarGate, CalendarSpec, compile_calendars

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]
DAY_NAMES = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]
# Each zone's 2027 offset changes, plus two ordinary days, as places to look.
ANCHORS = [(zone, change) for zone in ZONES[1:] for change in offset_changes(zone, 2027)] + [
    ("UTC", datetime(2027, 6, 16, 12, tzinfo=UTC)),
    ("UTC", datetime(2027, 12, 24, 12, tzinfo=UTC)),
]
# Wall times in or next to the zones' gaps and repeated hours (Berlin 02:00-03:00, New York
# 02:00-03:00 and 01:00-02:00, Lord Howe 02:00-02:30 and 01:30-02:00).
DST_WALL_TIMES = [
    hours * 3600 + minutes * 60
    for hours, minutes in [
        *[(0, 0), (1, 0), (1, 15), (1, 30), (1, 45), (2, 0)],
        *[(2, 10), (2, 15), (2, 30), (2, 45), (3, 0), (3, 30)],
    ]
]
WITHIN = timedelta(days=2)
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 = Monday
    start: int  # seconds since midnight
    end: int  # 86400 is 24:00; end <= start runs past midnight


@dataclass
class Model:
    """The oracle's calendar: its definition as plain data."""

    name: str
    zone: str
    dates: list[date] = field(default_factory=list)
    ranges: list[tuple[date, date]] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    include: list[int] = field(default_factory=list)
    exclude: list[int] = field(default_factory=list)


# Calendars, the indexes of the gate's exclude and only calendars, and an instant.
Scenario = tuple[list[Model], list[int], list[int], datetime]


def in_window(window: Window, weekday: int, second: int) -> bool:
    if window.end > window.start:
        return weekday in window.days and window.start <= second < window.end
    today = weekday in window.days and second >= window.start
    from_yesterday = (weekday - 1) % 7 in window.days and second < window.end
    return today or from_yesterday


def member(models: list[Model], index: int, instant: datetime) -> bool:
    model = models[index]
    wall = instant.astimezone(ZoneInfo(model.zone))
    day = wall.date()
    second = wall.hour * 3600 + wall.minute * 60 + wall.second
    inside = (
        day in model.dates
        or any(first <= day <= last for first, last in model.ranges)
        or any(in_window(window, day.weekday(), second) for window in model.windows)
        or any(member(models, other, instant) for other in model.include)
    )
    return inside and not any(member(models, other, instant) for other in model.exclude)


def oracle_blocker(
    models: list[Model], exclude: list[int], only: list[int], instant: datetime
) -> str | None:
    for index in exclude:
        if member(models, index, instant):
            return models[index].name
    if only and not any(member(models, index, instant) for index in only):
        return models[only[0]].name
    return None


def oracle_next_allowed(
    models: list[Model], exclude: list[int], only: list[int], start: datetime
) -> datetime | None:
    """Walk from ``start``: every whole UTC minute, and every second of a minute whose wall
    time holds a window boundary with seconds (all zones here have whole-minute offsets,
    so a UTC minute is a wall-clock minute)."""

    def blocked(instant: datetime) -> bool:
        return oracle_blocker(models, exclude, only, instant) is not None

    if not blocked(start):
        return start
    fine = {
        (model.zone, boundary // 60)
        for model in models
        for window in model.windows
        for boundary in (window.start, window.end)
        if boundary % 60
    }
    limit = start + WITHIN
    minute = start.replace(second=0, microsecond=0)
    while minute <= limit:
        seconds = [minute]
        for zone, wall_minute in fine:
            wall = minute.astimezone(ZoneInfo(zone))
            if wall.hour * 60 + wall.minute == wall_minute:
                seconds = [minute + step * SECOND for step in range(60)]
                break
        for instant in seconds:
            if start < instant <= limit and not blocked(instant):
                return instant
        minute += MINUTE
    return None


def wall_time(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    text = f"{hours:02d}:{rest // 60:02d}"
    return text + (f":{rest % 60:02d}" if rest % 60 else "")


def to_spec(model: Model, models: list[Model]) -> CalendarSpec:
    return CalendarSpec.model_validate(
        {
            "name": model.name,
            "timezone": model.zone,
            "dates": [day.isoformat() for day in model.dates],
            "ranges": [{"from": a.isoformat(), "to": b.isoformat()} for a, b in model.ranges],
            "weekly": [
                {
                    "days": [DAY_NAMES[day] for day in sorted(window.days)],
                    "from": wall_time(window.start),
                    "to": wall_time(window.end),
                }
                for window in model.windows
            ],
            "include": [models[index].name for index in model.include],
            "exclude": [models[index].name for index in model.exclude],
        }
    )


# Boundaries are mostly around DST changes or on whole or half hours, sometimes any minute,
# rarely with seconds.
boundaries = st.one_of(
    st.sampled_from(DST_WALL_TIMES),
    st.integers(0, 47).map(lambda half_hours: half_hours * 1800),
    st.integers(0, 1439).map(lambda minutes: minutes * 60),
    st.integers(0, 86_399),
)
windows = st.builds(
    Window,
    days=st.frozensets(st.integers(0, 6), min_size=1),
    start=boundaries,
    end=st.one_of(boundaries, st.just(86_400)),
)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    anchor_zone, anchor = draw(st.sampled_from(ANCHORS))
    zones = st.one_of(st.just(anchor_zone), st.sampled_from(ZONES))
    around = anchor.date()
    days = st.integers(-3, 3).map(lambda offset: around + timedelta(days=offset))
    count = draw(st.integers(1, 3))
    models: list[Model] = []
    for index in range(count):
        model = Model(
            name=f"cal-{index}",
            zone=draw(zones),
            dates=draw(st.lists(days, max_size=2)),
            ranges=[
                (first, first + timedelta(days=length))
                for first, length in draw(st.lists(st.tuples(days, st.integers(0, 2)), max_size=1))
            ],
            windows=draw(st.lists(windows, max_size=3)),
        )
        # Only earlier calendars, so references never form a cycle.
        if index:
            model.include = draw(st.lists(st.integers(0, index - 1), max_size=1, unique=True))
            model.exclude = draw(st.lists(st.integers(0, index - 1), max_size=1, unique=True))
        if not (model.dates or model.ranges or model.windows or model.include):
            model.windows = [draw(windows)]
        models.append(model)
    indexes = st.lists(st.integers(0, count - 1), max_size=2, unique=True)
    exclude, only = draw(indexes), draw(indexes)
    offset = draw(st.one_of(st.integers(-6 * 3600, 6 * 3600), st.integers(-36 * 3600, 36 * 3600)))
    fraction = draw(st.sampled_from([0, 0, 0, 1, 999_999]))
    instant = anchor + timedelta(seconds=offset, microseconds=fraction)
    return models, exclude, only, instant


@st.composite
def dst_scenarios(draw: st.DrawFn) -> Scenario:
    """One calendar of windows bounded around a DST change of its zone, and an instant
    shortly before the change: the search crosses the gap or the repeated hour."""
    zone, change = draw(st.sampled_from([anchor for anchor in ANCHORS if anchor[0] != "UTC"]))
    times = st.sampled_from(DST_WALL_TIMES)
    window = st.builds(
        Window,
        days=st.one_of(st.just(frozenset(range(7))), st.frozensets(st.integers(0, 6), min_size=1)),
        start=times,
        end=st.one_of(times, st.just(86_400)),
    )
    model = Model(name="dst", zone=zone, windows=draw(st.lists(window, min_size=1, max_size=2)))
    excluding = draw(st.booleans())
    instant = change + timedelta(seconds=draw(st.integers(-4 * 3600, 2 * 3600)))
    return [model], [0] if excluding else [], [] if excluding else [0], instant


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios())
def test_gate_matches_the_oracle(scenario: Scenario) -> None:
    check_against_the_oracle(scenario)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dst_scenarios())
def test_gate_matches_the_oracle_across_dst_changes(scenario: Scenario) -> None:
    check_against_the_oracle(scenario)


def check_against_the_oracle(scenario: Scenario) -> None:
    models, exclude, only, instant = scenario
    calendars = compile_calendars([to_spec(model, models) for model in models])
    for index, model in enumerate(models):
        assert calendars[model.name].contains(instant) == member(models, index, instant)
    gate = CalendarGate(
        [calendars[models[index].name] for index in exclude],
        [calendars[models[index].name] for index in only],
        defer=True,
    )
    assert gate.blocker(instant) == oracle_blocker(models, exclude, only, instant)

    expected = oracle_next_allowed(models, exclude, only, instant)
    found = gate.next_allowed(instant, within=WITHIN)
    assert found == expected
    event(
        "allowed at once"
        if found == instant
        else "nothing allowed within the window"
        if found is None
        else "allowed later"
    )
    if found is not None:
        assert found.tzinfo is UTC
        assert gate.blocker(found) is None
        if found != instant:
            assert oracle_blocker(models, exclude, only, found - SECOND) is not None
