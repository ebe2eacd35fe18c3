"""The plumbing every SQL store shares: connections for reads and for one-transaction
writes, driver errors translated into the store's own, and a few statement helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import CTE, ColumnClause, ColumnElement, Table, cast, delete, select, update, values
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from belfry.adapters.store.errors import UNAVAILABLE_ERRORS, StoreUnavailable
from belfry.ports.store import InvalidValue

__all__ = ["WRITE_OPTION", "SqlConnections"]

# Execution option marking write transactions (SQLite begins them IMMEDIATE).
WRITE_OPTION = "belfry_write"


class SqlConnections:
    """A SQLAlchemy async engine, with the store's ways of reading and writing."""

    def __init__(self, engine: AsyncEngine, display_url: str) -> None:
        self._engine = engine
        self._kind = engine.dialect.name
        self._writer = engine.execution_options(**{WRITE_OPTION: True})
        # Every read is a single statement: on PostgreSQL it needs no BEGIN and ROLLBACK
        # round trips. (Not on SQLite, where the begin hook would leave BEGIN open.)
        self._reader = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if self._kind == "postgresql"
            else engine
        )
        self._url = display_url

    @property
    def kind(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._kind

    @property
    def engine(self) -> AsyncEngine:
        """The engine, for other adapters that share this database (and for tests)."""
        return self._engine

    @property
    def url(self) -> str:
        """The database URL with its password masked."""
        return self._url

    # -- plumbing ---------------------------------------------------------------------------
    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        with self._translated_errors():
            async with self._reader.connect() as connection:
                yield connection

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """One transaction, committed on leaving unless an exception escapes."""
        with self._translated_errors():
            async with self._writer.begin() as connection:
                yield connection

    @contextmanager
    def _translated_errors(self) -> Iterator[None]:
        # Callers above the adapters may not import SQLAlchemy: give them errors they know.
        try:
            yield
        except UNAVAILABLE_ERRORS as error:
            raise StoreUnavailable.from_error(self._url, error) from error
        except DataError as error:  # PostgreSQL: numeric out of range, NUL in text, ...
            cause = str(error.orig or error).strip().splitlines()
            raise InvalidValue(cause[0] if cause else "invalid value") from None
        except OverflowError:  # SQLite's driver, before the database sees the value
            raise InvalidValue("a number is too large for the database") from None
        except StatementError as error:
            mistake = _caller_mistake(error)
            if mistake is None:
                raise
            raise mistake from None

    async def _write_named(
        self,
        connection: AsyncConnection,
        table: Table,
        values_by_name: Mapping[str, dict[str, Any]],
        delete_names: Sequence[str],
        now: datetime,
    ) -> None:
        """Delete, create and replace rows of a table keyed by ``name`` (calendars,
        channels, group settings) within the caller's transaction, keeping ``created_at``
        of the rows replaced."""
        if delete_names:
            await connection.execute(delete(table).where(table.c.name.in_(set(delete_names))))
        if not values_by_name:
            return
        result = await connection.execute(
            select(table.c.name).where(table.c.name.in_(set(values_by_name)))
        )
        existing = {row.name for row in result}
        for name, columns in values_by_name.items():
            if name in existing:
                await connection.execute(
                    update(table).where(table.c.name == name).values(**columns, updated_at=now)
                )
        created = [
            {"name": name, **columns, "created_at": now, "updated_at": now}
            for name, columns in values_by_name.items()
            if name not in existing
        ]
        if created:
            try:
                await connection.execute(table.insert(), created)
            except IntegrityError as error:
                # Lost a race with a concurrent apply creating the same name.
                raise ValueError(
                    f"a created {table.name.rstrip('s')} already exists; apply again"
                ) from error

    def _insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        # Both dialects spell "insert unless the key exists" as ON CONFLICT DO NOTHING.
        if self._kind == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def _rows(
        self, name: str, columns: list[ColumnClause[Any]], rows: list[tuple[Any, ...]]
    ) -> CTE:
        """Parameter rows as ``WITH name(columns) AS (VALUES ...)``, to update many rows,
        each with its own values, in one statement."""
        return values(*columns, name=name).data(rows).cte(name)

    def _typed(self, value: ColumnElement[Any]) -> ColumnElement[Any]:
        # PostgreSQL types a VALUES column of only NULLs as text; say what it holds. On
        # SQLite a CAST would change the stored form (CAST AS DATETIME yields a number).
        if self._kind == "postgresql":
            return cast(value, value.type)
        return value


def _caller_mistake(error: StatementError) -> ValueError | None:
    """The caller's own mistake (a naive datetime) that SQLAlchemy wrapped, if it is one."""
    if not isinstance(error, DBAPIError) and isinstance(error.orig, ValueError):
        return error.orig
    return None
