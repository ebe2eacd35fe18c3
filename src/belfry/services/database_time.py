"""The database's time, read off this server's clock (DESIGN.md "HA", guarantee on time).

Servers sharing a database decide due-ness on one clock, the database's: each measures
the offset of its own clock against it on every leadership round, and reads the time as
its own clock plus that offset. A node whose clock is further off than ``MAX_CLOCK_OFFSET`` refuses
the leadership (``LeaderElection``): such a clock is broken, and the runs it plans would
start at the wrong time on workers that trust their own clocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from belfry.ports.clock import Clock

__all__ = ["MAX_CLOCK_OFFSET", "DatabaseTime"]

# Seconds: beyond this a node's clock is broken, not merely drifting.
MAX_CLOCK_OFFSET = 2.0


class DatabaseTime:
    """A ``Clock`` that reads the database's time: ``local`` plus the measured offset.

    Each round trip bounds the offset: the database read its clock between the local
    ``before`` and ``after``, so the offset is at least ``database_now - after`` and at
    most ``database_now - before``. The clock uses the tightest lower bound of the recent
    round trips: it may run behind the database by a round trip, never ahead, so a run
    is never handed out to start before its instant (a midpoint estimate was ahead by
    tens of milliseconds on a loaded host). A sample that contradicts the others (the
    local clock was stepped) clears them.
    """

    def __init__(self, local: Clock, window: timedelta = timedelta(seconds=30)) -> None:
        self.local = local
        self._window = window
        # Seconds to add to the local clock to read the database's; None until measured.
        self.offset: float | None = None
        self._samples: list[_Sample] = []

    def now(self) -> datetime:
        return self.local.now() + timedelta(seconds=self.offset or 0.0)

    async def sleep(self, seconds: float) -> None:
        await self.local.sleep(seconds)

    def observe(self, before: datetime, database_now: datetime, after: datetime) -> float:
        """Take one round trip into account; return the offset now in use."""
        sample = _Sample(
            at=after,
            lower=(database_now - after).total_seconds(),
            upper=(database_now - before).total_seconds(),
        )
        self._samples = [
            kept
            for kept in self._samples
            if after - kept.at <= self._window
            and kept.lower <= sample.upper
            and sample.lower <= kept.upper
        ]
        self._samples.append(sample)
        self.offset = max(kept.lower for kept in self._samples)
        return self.offset


@dataclass(frozen=True)
class _Sample:
    at: datetime  # local time of the answer
    lower: float
    upper: float
