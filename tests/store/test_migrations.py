"""Migrations: from an empty database to head, idempotent, and equal to schema.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from belfry.adapters.store import SqlStore, open_store
from belfry.adapters.store.factory import MIGRATIONS_DIR
from belfry.adapters.store.schema import metadata

VERSION_TABLE = "belfry_schema_version"


@pytest.fixture(
    params=[pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def empty_url(request: pytest.FixtureRequest) -> str:
    """A database without any tables yet."""
    url: str = request.getfixturevalue(
        "sqlite_url" if request.param == "sqlite" else "pg_empty_url"
    )
    return url


def _head() -> str | None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


async def _version(store: SqlStore) -> Any:
    async with store.engine.connect() as connection:
        return await connection.scalar(text(f"SELECT version_num FROM {VERSION_TABLE}"))


async def test_migrates_an_empty_database_and_reopens(empty_url: str) -> None:
    first = await open_store(empty_url)
    try:
        assert await _version(first) == _head() == "0003"  # the newest revision
        assert await first.count_tokens() == 0
    finally:
        await first.close()
    # Opening again (a restart, a second replica) finds nothing to do.
    second = await open_store(empty_url)
    try:
        assert await _version(second) == _head()
        await second.ping()
    finally:
        await second.close()


async def test_replicas_starting_together_migrate_once(empty_url: str) -> None:
    stores = await asyncio.gather(*(open_store(empty_url) for _ in range(4)))
    try:
        assert [await _version(store) for store in stores] == [_head()] * 4
    finally:
        for store in stores:
            await store.close()


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "version_table": VERSION_TABLE}
    )
    return list(compare_metadata(context, metadata))


async def test_migrations_create_exactly_the_declared_schema(store: SqlStore) -> None:
    async with store.engine.connect() as connection:
        diff = await connection.run_sync(_diff)
    assert diff == []


async def test_sqlite_connections_are_configured(sqlite_url: str) -> None:
    store = await open_store(sqlite_url)
    try:
        async with store.engine.connect() as connection:
            pragmas = {
                name: await connection.scalar(text(f"PRAGMA {name}"))
                for name in ("journal_mode", "busy_timeout", "synchronous", "foreign_keys")
            }
    finally:
        await store.close()
    # synchronous 1 is NORMAL.
    assert pragmas == {
        "journal_mode": "wal",
        "busy_timeout": 10000,
        "synchronous": 1,
        "foreign_keys": 1,
    }
