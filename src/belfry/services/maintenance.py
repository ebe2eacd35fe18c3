"""Maintenance windows: starting one, and ending one with the runs ``defer`` jobs are owed.

While a window is in force the scheduler records each occurrence of the jobs it covers as
skipped and the run service starts none of their runs. Ending it runs each covered job
with ``on_maintenance: defer`` that missed an occurrence once, now (coalesced, like the
misfire policy ``run_once``), in the transaction that ends the window.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from belfry.core.maintenance import MaintenanceWindow
from belfry.core.records import JobRecord, NewRun, WorkerRecord
from belfry.ports.clock import Clock
from belfry.ports.maintenance import EndedMaintenance
from belfry.ports.store import Store
from belfry.services.placement import fan_out, wants_workers

__all__ = ["MaintenanceService"]


class MaintenanceService:
    def __init__(self, store: Store, clock: Clock, *, on_change: Callable[[], None]) -> None:
        self._store = store
        self._clock = clock
        # Wakes the scheduler and the long polls: a deferred run is due now.
        self._on_change = on_change

    async def windows(self) -> list[MaintenanceWindow]:
        return await self._store.list_maintenance()

    async def start(
        self, scope: str, note: str | None, by: str
    ) -> tuple[MaintenanceWindow | None, MaintenanceWindow]:
        """Put ``scope`` in maintenance: (the window before or None, the window now)."""
        window = MaintenanceWindow(scope, note, self._clock.now(), by)
        changed = await self._store.start_maintenance(window)
        self._on_change()
        return changed

    async def end(self, scope: str) -> EndedMaintenance | None:
        """End ``scope``'s window (None if it had none), making the deferred runs."""
        now = self._clock.now()
        workers = await self._store.list_workers()
        ended = await self._store.end_maintenance(scope, now, _owed(workers, now))
        if ended is not None:
            self._on_change()
        return ended


def _owed(workers: list[WorkerRecord], now: datetime) -> Callable[[JobRecord, int], list[NewRun]]:
    def owed(job: JobRecord, skipped: int) -> list[NewRun]:
        plural = "" if skipped == 1 else "s"
        run = NewRun(
            job.id,
            now,
            reason=f"maintenance ended: one run for {skipped} skipped occurrence{plural}",
            not_before=now,
        )
        return fan_out(job, [run], workers if wants_workers(job) else [], now)

    return owed
