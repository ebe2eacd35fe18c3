"""Retention: prune finished runs beyond each job's ``keep_runs`` / ``keep_days``.

Deletes in small batches with a pause between them, so the database stays free for the
scheduler and the workers while history is trimmed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta

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
    ) -> None:
        self._store = store
        self._clock = clock
        self._defaults = defaults
        self._interval = interval
        self._batch = batch
        self._pause = pause

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
        """One full pass over every job; returns the number of runs deleted."""
        deleted = 0
        for job in await self._store.list_jobs():
            retention = job.spec.retention
            keep_runs = retention.keep_runs or self._defaults.keep_runs
            keep_days = retention.keep_days or self._defaults.keep_days
            cutoff = (
                self._clock.now() - timedelta(days=keep_days) if keep_days is not None else None
            )
            while True:
                count = await self._store.prune_runs(job.id, keep_runs, cutoff, self._batch)
                deleted += count
                if count < self._batch:
                    break
                await asyncio.sleep(self._pause)
        if deleted:
            log.info("pruned %d runs", deleted)
        # The delivery log is kept as long as the longest default run history.
        days = self._defaults.keep_days or _DELIVERY_DAYS
        gone = await self._store.prune_deliveries(self._clock.now() - timedelta(days=days))
        if gone:
            log.info("pruned %d alert deliveries", gone)
        return deleted
