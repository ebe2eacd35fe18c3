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
# Runs per query, and at most per pass (the rest is read by the next pass).
BATCH = 500
PASS_LIMIT = 5000
# With nothing ending, the mark follows time in steps this long: not a write every pass.
IDLE_STEP = timedelta(minutes=1)


class EndedRuns:
    def __init__(
        self, store: Store, mark: str, *, batch: int = BATCH, pass_limit: int = PASS_LIMIT
    ) -> None:
        self._store = store
        self._mark_name = mark
        self._batch = batch
        self._pass_limit = pass_limit

    async def read(self, now: datetime) -> tuple[list[RunRecord], datetime]:
        """The runs that ended since the mark (and the overlap before it), in order of
        their end, at most ``pass_limit``; and the mark, to give back to ``advance``.
        Read page by page: more runs than a page may end within the overlap (a burst), and
        a reader that re-read only its first page would never get past them."""
        mark = await self._store.get_mark(self._mark_name) or now - FIRST_LOOK
        ended = await self._store.runs_finished_since(mark - OVERLAP, self._batch)
        page = ended
        while len(page) == self._batch and len(ended) < self._pass_limit:
            last = page[-1]
            assert last.finished_at is not None
            page = await self._store.runs_finished_since(last.finished_at, self._batch, last.id)
            ended += page
        return ended, mark

    async def advance(self, ended: list[RunRecord], mark: datetime, now: datetime) -> None:
        """Move the mark past what ``read`` returned: to the last end read, or on with time
        when nothing ended (in steps); written only when it moves."""
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
        await wakeup.wait(interval)
