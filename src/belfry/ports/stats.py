"""The statistics port: what ``/metrics`` and ``/readyz`` read from the store at request time.

Each method is one read, cheap enough to run on every Prometheus scrape (every 15 s or so,
on every server): it is served by the runs' indexes and bounded by the runs retention
keeps, never by all the history there ever was.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from belfry.core.states import RunState

__all__ = ["StatsStore"]


class StatsStore(Protocol):
    async def count_live_runs(self, now: datetime) -> dict[RunState, int]:
        """The runs waiting or in flight, counted by state: ``scheduled`` runs whose
        ``not_before`` is at or before ``now`` (the queue: due, not yet taken), and
        ``claimed`` and ``running`` runs. A state without such runs is absent."""
        ...

    async def last_successes(self) -> dict[str, datetime]:
        """Per job (``group/name``) with a succeeded run still stored: the latest
        ``finished_at`` of its succeeded runs. One query for every job."""
        ...

    async def schema_revision(self) -> str | None:
        """The migration the database's schema is at, as the migrations recorded it (None:
        none recorded)."""
        ...
