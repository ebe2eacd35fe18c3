"""Migrations: from an empty database to head, idempotent, and equal to schema.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, delete, func, insert, select, text

from belfry.adapters.store import SqlStore, open_store
from belfry.adapters.store.factory import MIGRATIONS_DIR, driver_url
from belfry.adapters.store.schema import jobs, metadata, output_chunks, run_events, runs
from belfry.core.jobs import JobSpec
from belfry.core.records import JobWrite, NewRun, OutputChunk
from belfry.core.states import Actor, RunState

S = RunState
T0 = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)

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
        assert await _version(first) == _head() == "0011"  # the newest revision
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


def _upgrade_to(connection: Connection, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _runs_of_0003(connection: Connection) -> list[int]:
    """A job with three finished runs (events, output) at revision 0003; the newest one
    deleted again. Returns the run ids, the deleted one last."""
    job_id = connection.execute(
        insert(jobs)
        .values(
            group="default",
            name="old",
            spec=JobSpec(name="old", schedule="@yearly", command="true").model_dump_json(),
            paused=False,
            created_at=T0,
            updated_at=T0,
        )
        .returning(jobs.c.id)
    ).scalar_one()
    ids = []
    for n in range(3):
        at = T0 + timedelta(seconds=n)
        run_id = connection.execute(
            # The 0003 table has no target column: name every column given.
            insert(runs)
            .values(
                job_id=job_id,
                job="default/old",
                scheduled_for=at,
                attempt=1,
                trigger="schedule",
                state="succeeded",
                not_before=at,
                kill_requested=False,
                created_at=at,
            )
            .returning(runs.c.id)
        ).scalar_one()
        connection.execute(
            insert(run_events).values(run_id=run_id, at=at, state="succeeded", actor="worker")
        )
        connection.execute(
            insert(output_chunks).values(run_id=run_id, seq=0, stream="stdout", data="hi", at=at)
        )
        ids.append(run_id)
    connection.execute(delete(run_events).where(run_events.c.run_id == ids[-1]))
    connection.execute(delete(output_chunks).where(output_chunks.c.run_id == ids[-1]))
    connection.execute(delete(runs).where(runs.c.id == ids[-1]))
    return ids


async def test_run_targets_keep_existing_runs_their_events_and_ids(empty_url: str) -> None:
    """0004 rebuilds SQLite's runs table: nothing may cascade away, no id be reused."""
    sync_url = driver_url(empty_url)
    if sync_url.drivername == "sqlite+aiosqlite":
        sync_url = sync_url.set(drivername="sqlite")
    engine = create_engine(sync_url)
    try:
        with engine.begin() as connection:
            _upgrade_to(connection, "0003")
        with engine.begin() as connection:
            kept_a, kept_b, deleted = _runs_of_0003(connection)
    finally:
        engine.dispose()

    store = await open_store(empty_url)  # migrates to head as a server does
    try:
        assert await _version(store) == _head()
        old = sorted(await store.list_runs(), key=lambda run: run.id)
        assert [(run.id, run.target) for run in old] == [(kept_a, None), (kept_b, None)]
        for run in old:
            assert [event.state for event in await store.run_events(run.id)] == [S.SUCCEEDED]
            assert [chunk.data for chunk in await store.read_output(run.id)] == ["hi"]
        job, instant = old[0].job_id, old[0].scheduled_for
        # Another target of an existing occurrence is a new run, with an id never used.
        [made] = await store.create_runs([NewRun(job, instant, target="w1")], Actor.USER, T0)
        assert made.id > deleted
        # The same target (none) of an existing occurrence is not.
        assert await store.create_runs([NewRun(job, instant)], Actor.USER, T0) == []
    finally:
        await store.close()


async def test_run_targets_downgrade_keeps_one_run_per_old_key(empty_url: str) -> None:
    store = await open_store(empty_url)
    try:
        await store.apply_jobs(
            [JobWrite(JobSpec(name="all", schedule="@yearly", command="true"), None)], [], T0
        )
        job = await store.get_job("default", "all")
        assert job is not None
        first, *others = await store.create_runs(
            [NewRun(job.id, T0, target=name) for name in ("w1", "w2", "w3")], Actor.USER, T0
        )
        await store.append_output([OutputChunk(r.id, 0, "stdout", "x", T0) for r in others])
    finally:
        await store.close()
    sync_url = driver_url(empty_url)
    if sync_url.drivername == "sqlite+aiosqlite":
        sync_url = sync_url.set(drivername="sqlite")
    engine = create_engine(sync_url)
    try:
        with engine.begin() as connection:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS_DIR))
            config.attributes["connection"] = connection
            command.downgrade(config, "0003")
        with engine.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(runs)) == 1
            assert connection.scalar(select(runs.c.id)) == first.id
            # The others' events and output went with them.
            assert set(connection.scalars(select(run_events.c.run_id))) == {first.id}
            assert connection.scalar(select(func.count()).select_from(output_chunks)) == 0
    finally:
        engine.dispose()
    again = await open_store(empty_url)
    try:
        async with again.engine.connect() as connection:
            assert await connection.run_sync(_diff) == []
        assert [run.target for run in await again.list_runs()] == [None]
    finally:
        await again.close()


async def test_retention_columns_take_each_jobs_values_from_its_spec(empty_url: str) -> None:
    """0011: jobs stored before it prune by their own keep_runs / keep_days."""
    sync_url = driver_url(empty_url)
    if sync_url.drivername == "sqlite+aiosqlite":
        sync_url = sync_url.set(drivername="sqlite")
    engine = create_engine(sync_url)
    specs = {
        "own": JobSpec(
            name="own",
            schedule="@yearly",
            command="true",
            retention={"keep_runs": 7, "keep_days": 2.5},  # type: ignore[arg-type]
        ),
        "plain": JobSpec(name="plain", schedule="@yearly", command="true"),
    }
    try:
        with engine.begin() as connection:
            _upgrade_to(connection, "0010")
            for name, spec in specs.items():
                connection.execute(
                    text(
                        'INSERT INTO jobs ("group", name, spec, paused, created_at, updated_at)'
                        " VALUES ('default', :name, :spec, false, :at, :at)"
                    ),
                    {"name": name, "spec": spec.model_dump_json(), "at": T0},
                )
    finally:
        engine.dispose()

    store = await open_store(empty_url)  # migrates to head as a server does
    try:
        async with store.engine.connect() as connection:
            rows = await connection.execute(
                select(jobs.c.name, jobs.c.keep_runs, jobs.c.keep_days).order_by(jobs.c.name)
            )
            assert [tuple(row) for row in rows] == [("own", 7, 2.5), ("plain", None, None)]
    finally:
        await store.close()
