"""Fixtures for the store contract suite: an opened store and a quick way to add jobs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import pytest

from belfry.adapters.store import SqlStore
from belfry.core.jobs import JobSpec
from belfry.core.records import JobRecord, JobWrite

AddJob = Callable[..., Awaitable[JobRecord]]


def _spec(name: str = "job", group: str = "default", **fields: Any) -> JobSpec:
    return JobSpec(name=name, group=group, schedule="* * * * *", command="true", **fields)


@pytest.fixture
def add_job(store: SqlStore) -> AddJob:
    """Create one job and return its record."""

    async def add(
        name: str = "job",
        group: str = "default",
        *,
        cursor: datetime | None,
        now: datetime,
        **fields: Any,
    ) -> JobRecord:
        await store.apply_jobs([JobWrite(_spec(name, group, **fields), cursor)], [], now)
        record = await store.get_job(group, name)
        assert record is not None
        return record

    return add
