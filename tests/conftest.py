"""Database fixtures for every test tier: a real SQLite file and a real PostgreSQL.

``store_url`` runs a test once per database; ``pg_url`` and ``sqlite_url`` give one kind.
Both are plain URLs as users give them to the CLI. PostgreSQL comes from
BELFRY_TEST_DATABASE_URL (a server URL; default postgresql://postgres@127.0.0.1:5432/postgres);
each test gets a throwaway database cloned from a template migrated once per session.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from belfry.adapters.store import SqlStore, open_store
from tests.private_postgres import PrivatePostgres

# Tests whose outcome depends on timing under faults (failover within seconds, clock skew,
# killed databases): `make test` runs them alone, after the rest has run in parallel.
_SERIAL_TESTS = (
    "tests/chaos/",
    "tests/e2e/test_ha.py",
    "tests/e2e/test_clock_skew.py",
    "tests/e2e/test_database_faults.py",
    "tests/e2e/test_rolling_upgrade.py",
    # Needs the run's head and tail chunks in one report batch, which a loaded machine's
    # timing can split before the server ever refuses the batch.
    "tests/e2e/test_request_limits.py::test_a_worker_splits_report_batches",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept, deselected = [], []
    for item in items:
        (kept if _on_its_store(item) else deselected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept
    for item in items:
        if item.nodeid.startswith(_SERIAL_TESTS):
            item.add_marker(pytest.mark.serial)
        if item.nodeid.startswith("tests/ui/"):
            # Playwright's sync API leaves an event loop running in its process, which
            # the asyncio tests cannot share: `make test` runs these in processes of
            # their own.
            item.add_marker(pytest.mark.ui)


def _on_its_store(item: pytest.Item) -> bool:
    """False for the store a test marked ``on_store(...)`` does not run on."""
    marker = item.get_closest_marker("on_store")
    callspec = getattr(item, "callspec", None)
    if marker is None or callspec is None:
        return True
    stores = [callspec.params[name] for name in _STORE_PARAMS if name in callspec.params]
    return all(store in marker.args for store in stores)


# The fixtures that run a test once per store.
_STORE_PARAMS = ("store_url", "fuzz_db_url")


DEFAULT_PG_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_CLUSTER_START = ["pg_ctlcluster", "--skip-systemctl-redirect", "15", "main", "start"]
PG_WAIT_SECONDS = 15.0


def pg_database_url(server_url: str, database: str) -> str:
    """``server_url`` pointing at another database, as a user-style URL."""
    url = make_url(server_url).set(drivername="postgresql", database=database)
    return url.render_as_string(hide_password=False)


def _pg_error(server_url: str) -> str | None:
    try:
        with psycopg.connect(
            pg_database_url(server_url, _maintenance_db(server_url)), connect_timeout=3
        ):
            return None
    except psycopg.Error as error:
        return str(error).strip().splitlines()[0] if str(error).strip() else repr(error)


def _maintenance_db(server_url: str) -> str:
    return make_url(server_url).database or "postgres"


def _admin(server_url: str, statement: sql.Composed) -> None:
    # CREATE/DROP DATABASE cannot run inside a transaction block.
    conninfo = pg_database_url(server_url, _maintenance_db(server_url))
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as connection:
        connection.execute(statement)


def _migrate(url: str) -> None:
    async def run() -> None:
        store = await open_store(url)
        await store.close()

    # In a thread of its own: safe whether or not an event loop is running here.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, run()).result()


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The PostgreSQL server URL, started here when it is a local cluster that is down."""
    server_url = os.environ.get("BELFRY_TEST_DATABASE_URL", DEFAULT_PG_SERVER)
    error = _pg_error(server_url)
    if error is not None and shutil.which(PG_CLUSTER_START[0]):
        subprocess.run(PG_CLUSTER_START, check=False, capture_output=True, timeout=60)
        deadline = time.monotonic() + PG_WAIT_SECONDS
        while error is not None and time.monotonic() < deadline:
            time.sleep(0.5)
            error = _pg_error(server_url)
    if error is not None:
        pytest.fail(
            f"PostgreSQL is not reachable at {make_url(server_url)!r}: {error}\n"
            f"Start it (e.g. `{' '.join(PG_CLUSTER_START)}`) or point "
            "BELFRY_TEST_DATABASE_URL at a server, e.g. "
            "postgresql://postgres@127.0.0.1:5432/postgres",
            pytrace=False,
        )
    return server_url


@pytest.fixture(scope="session")
def pg_template(pg_server: str) -> Iterator[str]:
    """A database migrated once per session, cloned by ``pg_url`` for each test."""
    name = f"belfry_tmpl_{uuid.uuid4().hex[:12]}"
    _admin(pg_server, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        _migrate(pg_database_url(pg_server, name))
        yield name
    finally:
        _admin(
            pg_server,
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
        )


@pytest.fixture
def pg_url(pg_server: str, pg_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test, dropped afterwards."""
    name = f"belfry_t_{uuid.uuid4().hex[:12]}"
    _admin(
        pg_server,
        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(pg_template)
        ),
    )
    try:
        yield pg_database_url(pg_server, name)
    finally:
        _admin(
            pg_server,
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
        )


@pytest.fixture
def pg_empty_url(pg_server: str) -> Iterator[str]:
    """A fresh PostgreSQL database with no schema at all (to test migrations)."""
    name = f"belfry_t_{uuid.uuid4().hex[:12]}"
    _admin(pg_server, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield pg_database_url(pg_server, name)
    finally:
        _admin(
            pg_server,
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
        )


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file in this test's temporary directory (created on first open)."""
    return f"sqlite:///{tmp_path / 'belfry.db'}"


@pytest.fixture(
    params=[
        pytest.param("sqlite"),
        pytest.param("postgresql", marks=pytest.mark.postgres),
    ]
)
def store_url(request: pytest.FixtureRequest) -> str:
    """A database URL, once for SQLite and once for PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SqlStore]:
    """A migrated store on SQLite, then on PostgreSQL, closed after the test."""
    opened = await open_store(store_url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of this test's own, to stop, restart or kill at will."""
    cluster = PrivatePostgres()
    try:
        cluster.start()
    except RuntimeError as error:
        cluster.destroy()
        pytest.fail(f"could not start a private PostgreSQL: {error}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.destroy()
