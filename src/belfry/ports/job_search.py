"""Finding jobs in a long list: what the web UI's jobs page and dashboard ask the store."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from belfry.core.records import JobRecord
from belfry.core.states import RunState

__all__ = ["JobSearch"]


class JobSearch(Protocol):
    async def search_jobs(
        self,
        *,
        groups: Collection[str] | None,
        group: str | None = None,
        words: Sequence[str] = (),
        paused: bool | None = None,
        latest_states: Collection[RunState] | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[int, list[JobRecord]]:
        """How many jobs match, and ``limit`` of them from ``offset``, ordered by group
        then name. Filters combine with AND: ``groups`` (None: all), ``group``, ``paused``,
        ``latest_states`` (the job's newest run is in one of them), and each of ``words``
        (case-insensitive) found in the job's ``group/name``, its description or its pool."""
        ...

    async def upcoming_jobs(self, *, groups: Collection[str] | None, limit: int) -> list[JobRecord]:
        """The ``limit`` unpaused jobs due soonest (by their cursor), of ``groups`` (None:
        all)."""
        ...

    async def job_groups(self, groups: Collection[str] | None) -> list[str]:
        """The groups that have jobs, ordered (only those among ``groups`` unless None)."""
        ...
