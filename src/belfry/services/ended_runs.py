"""Reading the runs that ended since a named mark: the leader's passes that act on
endings (alerts, chains) each keep their own mark in the store, so a new leader goes on
where the last one stopped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from belfry.core.records import RunRecord
from belfry.ports.store import Store
from belfry.services.wakeups import Wakeup

__all__ = ["EndedRuns", "repeat_passes"]

log = logging.getLogger(__name__)

# Runs that end are re-read this far behind the mark: a transaction that committed a
# run's end late (it began before the mark moved) is still seen. What a pass does must
# therefore be idempotent.
OVERLAP = timedelta(seconds=30)
# On its very first pass, a reader looks this far back (not at all history).
FIRST_LOOK = timedelta(minutes=5)
BATCH = 500


class EndedRuns:
    def __init__(self, store: Store, mark: str) -> None:
        self._store = store
        self._mark_name = mark

    async def read(self, now: datetime) -> tuple[list[RunRecord], datetime]:
        """The runs that ended since the mark (and the overlap before it), in order of
        their end, at most BATCH; and the mark, to give back to ``advance``."""
        mark = await self._store.get_mark(self._mark_name) or now - FIRST_LOOK
        return await self._store.runs_finished_since(mark - OVERLAP, BATCH), mark

    async def advance(self, ended: list[RunRecord], mark: datetime, now: datetime) -> None:
        """Move the mark past what ``read`` returned: to the last end read (a full batch
        leaves the rest for the next pass), or on with time when nothing ended."""
        if ended and ended[-1].finished_at is not None:
            last = ended[-1].finished_at
            if len(ended) < BATCH or last > mark:
                await self._store.set_mark(self._mark_name, max(last, mark))
        elif len(ended) < BATCH:
            await self._store.set_mark(self._mark_name, max(mark, now - OVERLAP))


async def repeat_passes(
    one_pass: Callable[[], Awaitable[object]], wakeup: Wakeup, interval: float, what: str
) -> None:
    """Run ``one_pass`` every ``interval`` seconds, or sooner when ``wakeup`` rings, until
    cancelled; a failed pass is logged (the database away: one line) and the next tried."""
    while True:
        try:
            await one_pass()
        except asyncio.CancelledError:
            raise
        except ConnectionError as error:
            log.warning("%s: %s", what, error)
        except Exception:
            log.exception("%s failed", what)
        await wakeup.wait(interval)
