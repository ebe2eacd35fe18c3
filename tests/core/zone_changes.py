"""Where a zone changes its UTC offset: the test suites' independent view of tzdata."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

__all__ = ["offset_changes", "utc_offset"]


def utc_offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


@cache
def offset_changes(zone_name: str, year: int) -> tuple[datetime, ...]:
    """Instants in ``year`` at which ``zone_name`` changes its UTC offset (to the second)."""
    zone = ZoneInfo(zone_name)
    found = []
    probe = datetime(year, 1, 1, tzinfo=UTC)
    step = timedelta(hours=6)
    while probe.year == year:
        after = probe + step
        if utc_offset(zone, probe) != utc_offset(zone, after):
            low, high = probe, after
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                if utc_offset(zone, middle) == utc_offset(zone, probe):
                    low = middle
                else:
                    high = middle
            found.append(high.replace(microsecond=0))
        probe = after
    return tuple(found)
