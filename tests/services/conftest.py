"""Fixtures of the services tests: a real store on each database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from belfry.adapters.store import SqlStore, open_store


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SqlStore]:
    """A migrated store on SQLite, then on PostgreSQL, closed after the test."""
    opened = await open_store(store_url)
    try:
        yield opened
    finally:
        await opened.close()
