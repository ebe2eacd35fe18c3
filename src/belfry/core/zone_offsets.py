"""Where a time zone changes its UTC offset, found by asking zoneinfo (pure).

zoneinfo does not list a zone's transitions, so they are found by probing: one probe a day,
then bisection to the microsecond. This assumes, as tzdata does for every zone, that a zone
never changes its offset and changes it back within one day.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = ["first_change", "offset_changes", "utc_offset"]

_MICROSECOND = timedelta(microseconds=1)
# Offsets are probed this far apart when looking for a zone's next offset change.
_PROBE_STEP = timedelta(days=1)


def utc_offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    """The UTC offset of ``zone`` at the aware ``instant``."""
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None  # ZoneInfo always knows the offset of a real instant
    return offset


def first_change(
    zone: ZoneInfo, lower: datetime, upper: datetime, offset: timedelta
) -> datetime | None:
    """The first instant in ``(lower, upper]`` whose UTC offset is not ``offset``."""
    good = lower
    while good < upper:
        probe = min(good + _PROBE_STEP, upper)
        if utc_offset(zone, probe) != offset:
            bad = probe
            while bad - good > _MICROSECOND:
                middle = good + (bad - good) // 2
                if utc_offset(zone, middle) != offset:
                    bad = middle
                else:
                    good = middle
            return bad
        good = probe
    return None


def offset_changes(
    zone: ZoneInfo, lower: datetime, upper: datetime
) -> Iterator[tuple[datetime, timedelta, timedelta]]:
    """Each instant in ``(lower, upper]`` at which ``zone`` changes its UTC offset, with the
    offsets before and after it, in order. Costs a probe per day of the span."""
    offset = utc_offset(zone, lower)
    while (change := first_change(zone, lower, upper, offset)) is not None:
        new = utc_offset(zone, change)
        yield change, offset, new
        lower, offset = change, new
