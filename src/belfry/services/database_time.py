"""The database's time, read off this server's clock (DESIGN.md "HA", guarantee on time).

Servers sharing a database decide due-ness on one clock, the database's: each measures
the offset of its own clock against it on every leadership round (the database's
``now()`` against the midpoint of the round trip), and reads the time as its own clock
plus that offset. A node whose clock is further off than ``MAX_CLOCK_OFFSET`` refuses
the leadership (``LeaderElection``): such a clock is broken, and the runs it plans would
start at the wrong time on workers that trust their own clocks.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from belfry.ports.clock import Clock

__all__ = ["MAX_CLOCK_OFFSET", "DatabaseTime", "measured_offset"]

# Seconds: beyond this a node's clock is broken, not merely drifting.
MAX_CLOCK_OFFSET = 2.0


class DatabaseTime:
    """A ``Clock`` that reads the database's time: ``local`` plus the measured offset."""

    def __init__(self, local: Clock) -> None:
        self.local = local
        # Seconds to add to the local clock to read the database's; None until measured.
        self.offset: float | None = None

    def now(self) -> datetime:
        return self.local.now() + timedelta(seconds=self.offset or 0.0)

    async def sleep(self, seconds: float) -> None:
        await self.local.sleep(seconds)


def measured_offset(before: datetime, database_now: datetime, after: datetime) -> float:
    """Seconds to add to the local clock to read the database's, from one round trip: the
    database's ``now`` was read between the local ``before`` and ``after``, so it is
    compared with their midpoint (wrong by at most half the round trip)."""
    midpoint = before + (after - before) / 2
    return (database_now - midpoint).total_seconds()
