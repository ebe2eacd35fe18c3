"""The store's part for job chains (``after:``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from belfry.core.records import JobRecord
from belfry.core.states import RunState

__all__ = ["ChainStore"]


class ChainStore(Protocol):
    async def chained_jobs(self) -> list[JobRecord]:
        """The jobs that run after others (their ``after`` is set)."""
        ...

    async def last_counting_ends(
        self, jobs: Sequence[str], states: Sequence[RunState], since: datetime
    ) -> dict[str, datetime | None]:
        """For each job (``GROUP/NAME``), when its latest run in one of ``states`` ended,
        at or after ``since`` (None: none, or no such job); a failed attempt that a retry
        follows does not count."""
        ...

    async def last_chained_at(self, job_id: int) -> datetime | None:
        """When the set that started the job's latest chained run completed (its
        ``not_before``; None: it never ran after others)."""
        ...
