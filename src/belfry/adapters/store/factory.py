"""Open a store from the URL users write: pick the async driver, connect, migrate."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from belfry.adapters.store.errors import UNAVAILABLE_ERRORS, StoreUnavailable
from belfry.adapters.store.sql import WRITE_OPTION, SqlStore
from belfry.adapters.store.stats import SCHEMA_VERSION_TABLE

__all__ = [
    "MIGRATIONS_DIR",
    "VERSION_TABLE",
    "SchemaTooNew",
    "database_kind",
    "driver_options",
    "driver_url",
    "open_store",
    "postgresql_connection",
    "redacted_url",
    "schema_head",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Alembic's table holding the database's schema revision (the migrations' env.py uses it).
VERSION_TABLE = SCHEMA_VERSION_TABLE

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
}
# psycopg prepares a statement on the server after its 5th execution. PgBouncer in transaction
# mode (before 1.21, or without max_prepared_statements) gives the next transaction another
# server connection, where that statement does not exist: `?prepare_threshold=none` in the
# URL turns server-side preparing off (docs/operations.md).
_PREPARE_OPTION = "prepare_threshold"
# pg_advisory_xact_lock key serialising migrations of replicas that start together.
_MIGRATION_LOCK = 0x62656C667279  # "belfry"
# RETURNING (3.35) and UPDATE ... FROM (3.33) carry the store's compare-and-set updates.
_SQLITE_MINIMUM = (3, 35, 0)
_SQLITE_BUSY_SECONDS = 10
_SQLITE_PRAGMAS = (
    f"PRAGMA busy_timeout={_SQLITE_BUSY_SECONDS * 1000}",
    # A no-op once _enable_wal has switched the file (WAL is a property of the file).
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
)


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(f"not a database URL: {url!r}") from None
    if parsed.drivername not in _DRIVERS:
        raise ValueError(
            f"unsupported database URL scheme {parsed.drivername!r} "
            "(use sqlite:///path.db or postgresql://user@host/db)"
        )
    return parsed


def database_kind(url: str) -> str:
    """``"sqlite"`` or ``"postgresql"``; ValueError for anything else."""
    return _DRIVERS[_parse(url).drivername].partition("+")[0]


def redacted_url(url: str) -> str:
    """The URL as users wrote it, with any password masked (for messages and logs)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid database URL>"


def driver_url(url: str) -> URL:
    """The SQLAlchemy URL with the async driver for this database."""
    parsed = _parse(url)
    parsed = parsed.set(drivername=_DRIVERS[parsed.drivername])
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
            # Each pooled connection would see its own empty database.
            raise ValueError("in-memory SQLite is not supported; give a file path")
    return parsed


def driver_options(url: URL) -> tuple[URL, dict[str, Any]]:
    """``url`` without the options Belfry reads itself, and those as driver arguments.

    The one such option is ``prepare_threshold`` (PostgreSQL): ``none`` stops psycopg from
    preparing statements on the server (for PgBouncer's transaction mode), a number sets
    how many executions of a statement come before it is prepared. The driver would get it
    as a string otherwise. ValueError for a value that is neither.
    """
    if url.get_backend_name() != "postgresql" or _PREPARE_OPTION not in url.query:
        return url, {}
    value = url.query[_PREPARE_OPTION]
    stripped = url.difference_update_query([_PREPARE_OPTION])
    if isinstance(value, str) and value.lower() == "none":
        return stripped, {_PREPARE_OPTION: None}
    if isinstance(value, str) and value.isdigit():
        return stripped, {_PREPARE_OPTION: int(value)}
    raise ValueError(f"{_PREPARE_OPTION}: expected none or a number in the URL, got {value!r}")


def _switch_to_wal(path: str) -> str:
    connection = sqlite3.connect(path, timeout=_SQLITE_BUSY_SECONDS, isolation_level=None)
    try:
        return str(connection.execute("PRAGMA journal_mode=WAL").fetchone()[0])
    finally:
        connection.close()


async def _enable_wal(path: str, shown: str) -> None:
    """Switch the file to WAL before any pooled connection uses it.

    Switching needs an exclusive lock, and SQLite refuses it at once (without waiting out
    busy_timeout) while another process that is switching too holds the write lock: that
    process finishes the switch, so retrying briefly is enough.
    """
    deadline = time.monotonic() + _SQLITE_BUSY_SECONDS
    while True:
        try:
            mode = await asyncio.to_thread(_switch_to_wal, path)
        except sqlite3.DatabaseError as error:
            if "locked" in str(error) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                continue
            raise StoreUnavailable(shown, str(error)) from error
        if mode.lower() != "wal":
            raise StoreUnavailable(shown, f"cannot use WAL journal mode (still {mode})")
        return


def _sqlite_engine(url: URL) -> AsyncEngine:
    engine = create_async_engine(url)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Stop the driver's implicit BEGIN (it skips DDL and SELECT); _on_begin takes over.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            for pragma in _SQLITE_PRAGMAS:
                cursor.execute(pragma)
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Writers take the write lock up front: a deferred transaction that reads and then
        # writes fails at once with SQLITE_BUSY instead of waiting out busy_timeout.
        immediate = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def postgresql_connection(url: URL) -> tuple[URL, dict[str, Any]]:
    """``url`` without Belfry's own options, and the psycopg arguments every connection to
    PostgreSQL gets (the store's pool and the peer link's)."""
    url, options = driver_options(url)
    return url, {
        "connect_timeout": 10,
        "application_name": "belfry",
        # A database that vanishes without closing the connection (a network cut, a
        # frozen host) must fail the calls within seconds, not after TCP's minutes.
        "tcp_user_timeout": 10_000,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        **options,
    }


def _postgresql_engine(url: URL) -> AsyncEngine:
    url, connect_args = postgresql_connection(url)
    # A replica outlives database failovers: test pooled connections before use.
    return create_async_engine(url, pool_pre_ping=True, connect_args=connect_args)


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def schema_head() -> str:
    """The newest migration this code knows: the revision ``open_store`` migrates to, and
    the one a database serving this code must be at (``/readyz``)."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations in {MIGRATIONS_DIR}")
    return head


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer Belfry than this one: this code neither knows
    its schema nor can migrate from it, and must not serve on it."""

    def __init__(self, revision: str, head: str) -> None:
        super().__init__(
            f"the database is at revision {revision}, newer than this Belfry knows "
            f"(head {head}): upgrade Belfry"
        )
        self.revision = revision
        self.head = head


def _refuse_newer_schema(connection: Connection, config: Config) -> None:
    """Alembic would fail on a revision it cannot locate with a traceback; worse, code
    older than the schema would serve on tables it does not know. Refuse with one line."""
    scripts = ScriptDirectory.from_config(config)
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    for revision in context.get_current_heads():
        try:
            known = scripts.get_revision(revision)
        except CommandError:
            known = None
        if known is None:
            raise SchemaTooNew(revision, scripts.get_current_head() or "none")


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    config = _alembic_config()
    # Read under the migration lock: a newer replica migrating right now is waited for.
    _refuse_newer_schema(connection, config)
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _upgrade_sqlite(connection: Connection) -> None:
    """Migrate with foreign keys off, as SQLite's own recipe for rebuilding a table says:
    dropping the old table of a batch rebuild would otherwise cascade to every row that
    refers to it. The pragma only takes effect outside a transaction, so it is set on the
    driver's connection before the migration's transaction begins; the connection is then
    discarded, so none with foreign keys off ever serves the store."""
    driver = connection.connection.dbapi_connection
    assert driver is not None  # checked out for this call
    try:
        cursor = driver.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=OFF")
        finally:
            cursor.close()
        with connection.execution_options(**{WRITE_OPTION: True}).begin():
            schema = connection.exec_driver_sql("PRAGMA schema_version").scalar()
            _upgrade(connection)
            # Checked only when a migration ran (it changes the schema): it reads every row.
            if connection.exec_driver_sql("PRAGMA schema_version").scalar() != schema:
                orphan = connection.exec_driver_sql("PRAGMA foreign_key_check").first()
                if orphan is not None:
                    # Rolled back: nothing of the migration is kept.
                    raise RuntimeError(
                        f"migrating would leave a row of {orphan[0]} without its {orphan[2]} row"
                    )
    finally:
        connection.invalidate()


async def open_store(url: str) -> SqlStore:
    """Connect to ``url`` (``sqlite:///file.db``, ``postgresql://user@host/db``) and
    migrate its schema to the newest version.

    Raises ValueError for a URL of another kind, StoreUnavailable when the database
    cannot be reached (or a URL option is bad) and SchemaTooNew when a newer Belfry has
    migrated it.
    """
    target = driver_url(url)
    shown = redacted_url(url)
    try:
        driver_options(target)  # checked before connecting
    except ValueError as error:
        # A StoreUnavailable: the server's CLI reports it in one line, not a traceback.
        raise StoreUnavailable(shown, str(error)) from None
    kind = target.get_backend_name()
    if kind == "sqlite":
        if sqlite3.sqlite_version_info < _SQLITE_MINIMUM:
            minimum = ".".join(map(str, _SQLITE_MINIMUM))
            raise StoreUnavailable(
                shown, f"SQLite {sqlite3.sqlite_version} is too old (belfry needs {minimum}+)"
            )
        try:
            Path(target.database or "").parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreUnavailable(shown, str(error)) from error
        await _enable_wal(target.database or "", shown)
        engine = _sqlite_engine(target)
    else:
        engine = _postgresql_engine(target)
    try:
        if kind == "sqlite":
            async with engine.connect() as connection:
                await connection.run_sync(_upgrade_sqlite)
        else:
            async with engine.execution_options(**{WRITE_OPTION: True}).begin() as connection:
                await connection.run_sync(_upgrade)
    except UNAVAILABLE_ERRORS as error:
        await engine.dispose()
        raise StoreUnavailable.from_error(shown, error) from error
    except DatabaseError as error:
        await engine.dispose()
        if type(error) is DatabaseError:  # e.g. SQLite "file is not a database"
            raise StoreUnavailable.from_error(shown, error) from error
        raise
    except BaseException:
        await engine.dispose()
        raise
    return SqlStore(engine, shown)
