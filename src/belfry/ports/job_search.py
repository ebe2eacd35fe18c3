"""Finding jobs in a long list: what the web UI's jobs page asks the store."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from belfry.core.records import JobRecord

__all__ = ["JobSearch"]


class JobSearch(Protocol):
    async def search_jobs(
        self,
        *,
        groups: Collection[str] | None,
        group: str | None = None,
        words: Sequence[str] = (),
        paused: bool | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[int, list[JobRecord]]:
        """How many jobs match, and ``limit`` of them from ``offset``, ordered by group
        then name. Filters combine with AND: ``groups`` (None: all), ``group``, ``paused``,
        and each of ``words`` (case-insensitive) found in the job's ``group/name``, its
        description or its pool."""
        ...

    async def job_groups(self, groups: Collection[str] | None) -> list[str]:
        """The groups that have jobs, ordered (only those among ``groups`` unless None)."""
        ...
