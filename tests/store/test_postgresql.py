"""PostgreSQL specifics: surviving dropped connections, reporting a vanished database."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from belfry.adapters.store import StoreUnavailable, open_store

pytestmark = pytest.mark.postgres


def _run_admin(pg_server: str, statement: sql.Composed) -> None:
    conninfo = make_url(pg_server).set(drivername="postgresql")
    with psycopg.connect(conninfo.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(statement)


def _database(url: str) -> str:
    name = make_url(url).database
    assert name
    return name


async def test_pooled_connections_killed_by_the_server_are_replaced(
    pg_url: str, pg_server: str
) -> None:
    store = await open_store(pg_url)
    try:
        assert await store.count_tokens() == 0
        # What a failover or an idle-connection reaper does to the pool.
        _run_admin(
            pg_server,
            sql.SQL(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = {} AND pid <> pg_backend_pid()"
            ).format(sql.Literal(_database(pg_url))),
        )
        assert await store.count_tokens() == 0
    finally:
        await store.close()


async def test_a_vanished_database_is_reported_as_unavailable(pg_url: str, pg_server: str) -> None:
    store = await open_store(pg_url)
    try:
        database = _database(pg_url)
        _run_admin(
            pg_server, sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database))
        )
        with pytest.raises(StoreUnavailable) as caught:
            await store.ping()
        assert database in str(caught.value)
        with pytest.raises(StoreUnavailable):
            await store.list_jobs()
    finally:
        await store.close()
