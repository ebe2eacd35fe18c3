"""Retention: prune finished runs beyond each job's ``keep_runs`` / ``keep_days``.

Found by queries, never by reading every job: runs past their age come off the
``finished_at`` index, oldest first; counts are checked only for the jobs that had new runs
since the last pass (a job's count grows only with new runs), all of them on the first pass.
Deletes go in small batches with a pause between them, so the database stays free for the
scheduler and the workers while history is trimmed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from belfry.ports.clock import Clock
from belfry.ports.store import Store

__all__ = ["Pruner", "RetentionDefaults"]

log = logging.getLogger(__name__)

# How long alert deliveries are kept when runs are kept without an age limit.
_DELIVERY_DAYS = 90


@dataclass(frozen=True)
class RetentionDefaults:
    keep_runs: int | None = 1000
    keep_days: float | None = 30.0


class Pruner:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        defaults: RetentionDefaults,
        *,
        interval: float = 60.0,
        batch: int = 200,
        pause: float = 0.05,
        jobs_per_query: int = 500,
    ) -> None:
        self._store = store
        self._clock = clock
        self._defaults = defaults
        self._interval = interval
        self._batch = batch
        self._pause = pause
        self._jobs_per_query = jobs_per_query
        # The runs up to this id have had their jobs' counts checked (0: none yet).
        self._counted_up_to = 0

    async def run_forever(self) -> None:
        while True:
            try:
                await self.prune_all()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pruning failed; will try again")
            await self._clock.sleep(self._interval)

    async def prune_all(self) -> int:
        """One pass; returns the number of runs deleted."""
        deleted = await self._in_batches(
            lambda: self._store.prune_aged_runs(
                self._clock.now(), self._defaults.keep_days, self._batch
            )
        )
        deleted += await self._prune_counts()
        if deleted:
            log.info("pruned %d runs", deleted)
        # The delivery log is kept as long as the longest default run history.
        days = self._defaults.keep_days or _DELIVERY_DAYS
        gone = await self._store.prune_deliveries(self._clock.now() - timedelta(days=days))
        if gone:
            log.info("pruned %d alert deliveries", gone)
        return deleted

    async def _prune_counts(self) -> int:
        newest = await self._store.newest_run_id()
        job_ids = await self._store.jobs_with_runs_between(self._counted_up_to, newest)
        deleted = 0
        for start in range(0, len(job_ids), self._jobs_per_query):
            chunk = job_ids[start : start + self._jobs_per_query]
            beyond = await self._store.runs_beyond_keep(chunk, self._defaults.keep_runs)
            for job_id, up_to_id in beyond.items():
                deleted += await self._in_batches(
                    partial(self._store.delete_finished_runs, job_id, up_to_id, self._batch)
                )
        # Only after the whole pass: a pass cut short checks these jobs again next time.
        self._counted_up_to = newest
        return deleted

    async def _in_batches(self, delete_batch: Callable[[], Awaitable[int]]) -> int:
        """Call ``delete_batch`` until it deletes less than a batch, pausing in between."""
        deleted = 0
        while True:
            count = await delete_batch()
            deleted += count
            if count < self._batch:
                return deleted
            await asyncio.sleep(self._pause)
