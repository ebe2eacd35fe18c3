"""DST in zones with odd histories: America/Santiago and Pacific/Apia (issue 3, item 5).

America/Santiago (southern hemisphere) changes its clocks at local midnight:

* spring forward, 2026-09-06 04:00 UTC: the wall clock jumps from 00:00 -04 to 01:00 -03,
  so 2026-09-06 00:00-00:59:59 does not exist;
* fall back, 2026-04-05 03:00 UTC: the wall clock reaches 24:00 -03 and goes back to
  23:00 -04, so 2026-04-04 23:00-23:59:59 happens twice.

Pacific/Apia skipped 2011-12-30 entirely: at 2011-12-30 10:00 UTC the wall clock jumped from
2011-12-29 23:59:59 -10 to 2011-12-31 00:00:00 +14.

Every expected instant below was worked out by hand from those transitions (and checked
against zoneinfo by ``test_transitions_are_where_the_cases_assume``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from zone_changes import offset_changes

from belfry.core.schedules import DstRules, next_instants, parse_schedule

SANTIAGO = ZoneInfo("America/Santiago")
APIA = ZoneInfo("Pacific/Apia")


def utc(*args: int) -> datetime:
    return datetime(*args).replace(tzinfo=UTC)  # type: ignore[arg-type]


def exists(wall: datetime, zone: ZoneInfo) -> bool:
    """Whether the naive wall-clock time ``wall`` happens at all in ``zone``."""
    naive = wall.replace(tzinfo=None)
    return all(
        naive.replace(tzinfo=zone, fold=fold).astimezone(UTC).astimezone(zone).replace(tzinfo=None)
        == naive
        for fold in (0, 1)
    )


def test_transitions_are_where_the_cases_assume() -> None:
    # Santiago spring forward: 00:00 -04 -> 01:00 -03 on 2026-09-06.
    assert utc(2026, 9, 6, 3, 59, 59).astimezone(SANTIAGO).isoformat() == (
        "2026-09-05T23:59:59-04:00"
    )
    assert utc(2026, 9, 6, 4).astimezone(SANTIAGO).isoformat() == "2026-09-06T01:00:00-03:00"
    assert not exists(datetime(2026, 9, 6, 0, 30), SANTIAGO)
    # Santiago fall back: 24:00 -03 -> 23:00 -04 on 2026-04-04.
    assert utc(2026, 4, 5, 2, 59, 59).astimezone(SANTIAGO).isoformat() == (
        "2026-04-04T23:59:59-03:00"
    )
    assert utc(2026, 4, 5, 3).astimezone(SANTIAGO).isoformat() == "2026-04-04T23:00:00-04:00"
    # Apia: 2011-12-29 23:59:59 -10 -> 2011-12-31 00:00 +14.
    assert utc(2011, 12, 30, 9, 59, 59).astimezone(APIA).isoformat() == (
        "2011-12-29T23:59:59-10:00"
    )
    assert utc(2011, 12, 30, 10).astimezone(APIA).isoformat() == "2011-12-31T00:00:00+14:00"
    assert not any(
        exists(datetime(2011, 12, 30) + timedelta(minutes=minute), APIA)
        for minute in range(0, 24 * 60, 15)
    )


# (expression, zone, DST rules, start, expected instants in UTC)
CASES = [
    pytest.param(
        "0 0 * * *",
        "America/Santiago",
        DstRules(),
        utc(2026, 9, 4),
        # 09-06 00:00 is in the gap: runs right after it, at 01:00 -03 = 04:00 UTC.
        [utc(2026, 9, 4, 4), utc(2026, 9, 5, 4), utc(2026, 9, 6, 4), utc(2026, 9, 7, 3)],
        id="santiago-midnight-spring-forward-runs-after-gap",
    ),
    pytest.param(
        "0 0 * * *",
        "America/Santiago",
        DstRules(gap="skip"),
        utc(2026, 9, 4),
        [utc(2026, 9, 4, 4), utc(2026, 9, 5, 4), utc(2026, 9, 7, 3), utc(2026, 9, 8, 3)],
        id="santiago-midnight-spring-forward-gap-skip",
    ),
    pytest.param(
        "30 0 * * *",
        "America/Santiago",
        DstRules(),
        utc(2026, 9, 5, 12),
        # 09-06 00:30 does not exist: runs at the gap's end, 01:00 -03.
        [utc(2026, 9, 6, 4), utc(2026, 9, 7, 3, 30)],
        id="santiago-0030-spring-forward-runs-at-gap-end",
    ),
    pytest.param(
        "*/30 0 * * *",
        "America/Santiago",
        DstRules(),
        utc(2026, 9, 5),
        # Not a fixed-time expression: never in the gap, so nothing on 09-06.
        [utc(2026, 9, 5, 4), utc(2026, 9, 5, 4, 30), utc(2026, 9, 7, 3), utc(2026, 9, 7, 3, 30)],
        id="santiago-wildcard-minute-spring-forward-skips-gap",
    ),
    pytest.param(
        "0 1 * * *",
        "America/Santiago",
        DstRules(),
        utc(2026, 9, 5, 12),
        # 01:00 -03 is the first real instant after the gap, and runs once.
        [utc(2026, 9, 6, 4), utc(2026, 9, 7, 4)],
        id="santiago-0100-on-spring-forward-day",
    ),
    pytest.param(
        "30 23 * * *",
        "America/Santiago",
        DstRules(),
        utc(2026, 4, 3),
        # 04-04 23:30 happens at 02:30 UTC (-03) and 03:30 UTC (-04): runs once, first pass.
        [
            utc(2026, 4, 3, 2, 30),
            utc(2026, 4, 4, 2, 30),
            utc(2026, 4, 5, 2, 30),
            utc(2026, 4, 6, 3, 30),
        ],
        id="santiago-2330-fall-back-runs-once",
    ),
    pytest.param(
        "30 23 * * *",
        "America/Santiago",
        DstRules(repeat="both"),
        utc(2026, 4, 4, 12),
        [utc(2026, 4, 5, 2, 30), utc(2026, 4, 5, 3, 30), utc(2026, 4, 6, 3, 30)],
        id="santiago-2330-fall-back-repeat-both",
    ),
    pytest.param(
        "30 * * * *",
        "America/Santiago",
        DstRules(),
        utc(2026, 4, 5, 1),
        # Wildcard hour: both passes of 23:30.
        [
            utc(2026, 4, 5, 1, 30),
            utc(2026, 4, 5, 2, 30),
            utc(2026, 4, 5, 3, 30),
            utc(2026, 4, 5, 4, 30),
        ],
        id="santiago-wildcard-hour-fall-back-both-passes",
    ),
    pytest.param(
        "0 0 * * *",
        "America/Santiago",
        DstRules(),
        utc(2026, 4, 4, 12),
        # 04-05 00:00 -04 happens once, after the repeated hour.
        [utc(2026, 4, 5, 4), utc(2026, 4, 6, 4)],
        id="santiago-midnight-after-fall-back",
    ),
    pytest.param(
        "0 12 * * *",
        "Pacific/Apia",
        DstRules(),
        utc(2011, 12, 28),
        # 12-30 12:00 never happened: run_after puts it at the end of the gap, 12-31 00:00
        # +14 (10:00 UTC); 12-31 12:00 +14 is 12-30 22:00 UTC.
        [
            utc(2011, 12, 28, 22),
            utc(2011, 12, 29, 22),
            utc(2011, 12, 30, 10),
            utc(2011, 12, 30, 22),
            utc(2011, 12, 31, 22),
        ],
        id="apia-noon-across-skipped-day",
    ),
    pytest.param(
        "0 12 * * *",
        "Pacific/Apia",
        DstRules(gap="skip"),
        utc(2011, 12, 28),
        [utc(2011, 12, 28, 22), utc(2011, 12, 29, 22), utc(2011, 12, 30, 22)],
        id="apia-noon-across-skipped-day-gap-skip",
    ),
    pytest.param(
        "0 0 * * *",
        "Pacific/Apia",
        DstRules(),
        utc(2011, 12, 28),
        # 12-30 00:00 moves to the gap's end, which is also 12-31 00:00: one run there.
        [
            utc(2011, 12, 28, 10),
            utc(2011, 12, 29, 10),
            utc(2011, 12, 30, 10),
            utc(2011, 12, 31, 10),
        ],
        id="apia-midnight-moved-and-real-coincide-once",
    ),
    pytest.param(
        "0 * * * *",
        "Pacific/Apia",
        DstRules(),
        utc(2011, 12, 30, 8),
        # Wildcard hour: 12-29 23:00 -10 is followed by 12-31 00:00 +14, one hour later.
        [utc(2011, 12, 30, 9), utc(2011, 12, 30, 10), utc(2011, 12, 30, 11)],
        id="apia-hourly-across-jump",
    ),
    pytest.param(
        "every 1h",
        "Pacific/Apia",
        DstRules(),
        utc(2011, 12, 30, 8, 30),
        [utc(2011, 12, 30, 9), utc(2011, 12, 30, 10), utc(2011, 12, 30, 11)],
        id="apia-every-1h-across-jump",
    ),
]


@pytest.mark.parametrize(("expression", "zone", "dst", "start", "expected"), CASES)
def test_odd_zone_cases(
    expression: str, zone: str, dst: DstRules, start: datetime, expected: list[datetime]
) -> None:
    schedule = parse_schedule(expression, zone, dst=dst)
    instants = next_instants(schedule, start, len(expected))
    assert instants == expected
    assert all(instant.tzinfo is UTC for instant in instants)
    assert all(earlier < later for earlier, later in pairwise([start, *instants]))


@pytest.mark.parametrize("dst", [DstRules(), DstRules(gap="skip")], ids=["run_after", "skip"])
@pytest.mark.parametrize("expression", ["0 12 * * *", "0 0 * * *", "59 23 * * *", "*/10 * * * *"])
def test_apia_has_no_instant_on_the_skipped_day(expression: str, dst: DstRules) -> None:
    schedule = parse_schedule(expression, "Pacific/Apia", dst=dst)
    instants = [
        instant
        for instant in next_instants(schedule, utc(2011, 12, 29), 500)
        if instant < utc(2012, 1, 2)
    ]
    assert instants  # the window is covered
    local_dates = {instant.astimezone(APIA).date() for instant in instants}
    assert date(2011, 12, 30) not in local_dates
    assert {date(2011, 12, 29), date(2011, 12, 31)} <= local_dates
    assert all(earlier < later for earlier, later in pairwise(instants))


def test_apia_every_1h_stays_one_hour_apart_across_the_jump() -> None:
    schedule = parse_schedule("every 1h", "Pacific/Apia")
    instants = next_instants(schedule, utc(2011, 12, 29), 72)
    assert instants[0] == utc(2011, 12, 29, 1)
    assert all(later - earlier == timedelta(hours=1) for earlier, later in pairwise(instants))
    walls = [instant.astimezone(APIA).replace(tzinfo=None) for instant in instants]
    assert datetime(2011, 12, 29, 23) in walls
    assert datetime(2011, 12, 31, 0) in walls
    assert walls.index(datetime(2011, 12, 31, 0)) == walls.index(datetime(2011, 12, 29, 23)) + 1


# --- properties over several zones ---------------------------------------------------------

ZONES = [
    "America/Santiago",
    "Pacific/Apia",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/Havana",
    "Antarctica/Troll",
]
LOWEST, HIGHEST = utc(2010, 1, 1), utc(2030, 1, 1)


def transitions(name: str) -> tuple[datetime, ...]:
    """The zone's offset changes in [LOWEST, HIGHEST), to the second."""
    return tuple(
        change for year in range(LOWEST.year, HIGHEST.year) for change in offset_changes(name, year)
    )


@st.composite
def zone_and_start(draw: st.DrawFn) -> tuple[str, datetime]:
    """A zone and a start instant, mostly within a couple of days of one of its changes."""
    zone = draw(st.sampled_from(ZONES))
    changes = transitions(zone)
    near_change = draw(st.integers(0, 4)) > 0  # four times in five
    if changes and near_change:
        change = draw(st.sampled_from(changes))
        return zone, change + timedelta(seconds=draw(st.integers(-2 * 86400, 86400)))
    moment = draw(st.datetimes(LOWEST.replace(tzinfo=None), HIGHEST.replace(tzinfo=None)))
    return zone, moment.replace(tzinfo=UTC)


def test_property_zones_have_changes() -> None:
    for name in ZONES:
        assert transitions(name), name
    assert utc(2011, 12, 30, 10) in transitions("Pacific/Apia")


@settings(max_examples=150, deadline=None)
@given(
    zone_and_start(),
    st.sampled_from(["every 1m", "every 90s", "every 15m", "every 1h", "every 1h30m", "every 1d"]),
)
def test_every_is_one_step_apart_in_utc(where: tuple[str, datetime], expression: str) -> None:
    zone, start = where
    schedule = parse_schedule(expression, zone)
    step = {"1m": 60, "90s": 90, "15m": 900, "1h": 3600, "1h30m": 5400, "1d": 86400}[
        expression.split()[1]
    ]
    instants = next_instants(schedule, start, 40)
    assert len(instants) == 40
    assert start < instants[0] <= start + timedelta(seconds=step)
    assert all(later - earlier == timedelta(seconds=step) for earlier, later in pairwise(instants))


@settings(max_examples=150, deadline=None)
@given(
    zone_and_start(),
    st.sampled_from(
        ["*/15 * * * *", "0 * * * *", "30 * * * *", "*/7 * * * *", "0 */2 * * *", "*/20 0 * * *"]
    ),
)
def test_wildcard_instants_are_real_wall_times(
    where: tuple[str, datetime], expression: str
) -> None:
    zone_name, start = where
    zone = ZoneInfo(zone_name)
    schedule = parse_schedule(expression, zone_name)
    instants = next_instants(schedule, start, 30)
    assert len(instants) == 30
    assert all(earlier < later for earlier, later in pairwise([start, *instants]))
    for instant in instants:
        local = instant.astimezone(zone)
        naive = local.replace(tzinfo=None)
        # local -> UTC -> local round-trips: the wall time exists (is not in a gap).
        back = naive.replace(tzinfo=zone, fold=local.fold).astimezone(UTC)
        assert back == instant, (expression, zone_name, instant, naive)
        assert exists(naive, zone), (expression, zone_name, instant, naive)
