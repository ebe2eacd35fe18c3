"""The store's part for maintenance windows, pauses that end by themselves and drains."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from belfry.core.maintenance import MaintenanceWindow
from belfry.core.records import JobRecord, NewRun, RunRecord, WorkerRecord

__all__ = ["EndedMaintenance", "MaintenanceStore", "OwedRuns"]

# Given a ``defer`` job and how many of its occurrences the maintenance skipped, the runs
# to insert for them (one; one per worker for ``target: all``).
OwedRuns = Callable[[JobRecord, int], list[NewRun]]


@dataclass(frozen=True)
class EndedMaintenance:
    window: MaintenanceWindow
    # The runs made for the ``defer`` jobs the window covered.
    runs: list[RunRecord] = field(default_factory=list)


class MaintenanceStore(Protocol):
    async def list_maintenance(self) -> list[MaintenanceWindow]:
        """The windows in force, ordered by scope (``*`` first)."""
        ...

    async def start_maintenance(
        self, window: MaintenanceWindow
    ) -> tuple[MaintenanceWindow | None, MaintenanceWindow]:
        """Put the window's scope in maintenance: (the window it replaces or None, the
        window now in force). A scope already in maintenance keeps its start, time and
        person, and takes the new note."""
        ...

    async def end_maintenance(
        self, scope: str, now: datetime, owed: OwedRuns
    ) -> EndedMaintenance | None:
        """End the scope's window (None if it has none) and, in the same transaction,
        insert ``owed(job, skipped)`` for each ``on_maintenance: defer`` job that is not
        paused, no longer covered by any window, and has ``skipped`` > 0 occurrences
        skipped with the deferred mark since the window began."""
        ...

    async def resume_due_jobs(self, now: datetime) -> list[JobRecord]:
        """Resume the paused jobs whose ``resume_at`` is at or before ``now``; returns
        them as they are now (a job resumed by hand meanwhile is not among them)."""
        ...

    async def next_resume_at(self) -> datetime | None:
        """The earliest ``resume_at`` of a paused job (None when there is none)."""
        ...

    async def set_drain(self, name: str, drain: bool) -> WorkerRecord | None:
        """Ask the worker to drain (take nothing new) or to stop draining; returns it as
        it is now (None if unknown). A draining worker's record reads ``draining``."""
        ...
