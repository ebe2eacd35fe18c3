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
# Runs handed to one pass at most (the rest go to the next pass).
PASS_LIMIT = 2000
# Seconds between the end of a pass and the next, however often it is woken.
MIN_GAP = 0.2
# With nothing ending, the mark follows time in steps this long: not a write every pass.
IDLE_STEP = timedelta(minutes=1)


class EndedRuns:
    def __init__(self, store: Store, mark: str, *, pass_limit: int = PASS_LIMIT) -> None:
        self._store = store
        self._mark_name = mark
        self._pass_limit = pass_limit
        # The runs this reader handed out that are still inside the overlap (id -> end):
        # each pass re-reads the overlap's ids, but reads and hands out only the others.
        # (A new leader starts empty and hands the overlap out again: passes are
        # idempotent.)
        self._handed: dict[int, datetime] = {}

    async def read(self, now: datetime) -> tuple[list[RunRecord], datetime]:
        """The runs that ended since the mark (and the overlap before it) and were not
        handed out yet, in order of their end, at most ``pass_limit``; and the mark, to
        give back to ``advance``."""
        mark = await self._store.get_mark(self._mark_name) or now - FIRST_LOOK
        since = mark - OVERLAP
        self._handed = {run_id: end for run_id, end in self._handed.items() if end >= since}
        ids = await self._store.ended_run_ids(since)
        fresh = [run_id for run_id in ids if run_id not in self._handed][: self._pass_limit]
        return await self._store.ended_runs(fresh), mark

    async def advance(self, ended: list[RunRecord], mark: datetime, now: datetime) -> None:
        """After the pass handled ``ended``: move the mark to the last end handled, or on
        with time when nothing ended (in steps); written only when it moves."""
        for run in ended:
            if run.finished_at is not None:
                self._handed[run.id] = run.finished_at
        last = ended[-1].finished_at if ended else None
        if last is not None and last > mark:
            await self._store.set_mark(self._mark_name, last)
        elif len(ended) < self._pass_limit and now - OVERLAP - mark >= IDLE_STEP:
            # Everything up to now was read: re-reading the same overlap every pass is all
            # a mark left behind would do.
            await self._store.set_mark(self._mark_name, now - OVERLAP)


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
        # Woken at every run's end, a pass still waits a little: under a burst it would
        # otherwise run back to back.
        await asyncio.sleep(MIN_GAP)
        await wakeup.wait(interval)
