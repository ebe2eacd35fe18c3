"""Store contract: retention (keep the newest N finished runs, or those of the last D days)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from belfry.adapters.store import SqlStore
from belfry.adapters.store.schema import output_chunks, run_events
from belfry.core.records import JobRecord, NewRun, OutputChunk, RunRecord, Transition
from belfry.core.states import Actor, RunState

AddJob = Callable[..., Awaitable[JobRecord]]

T0 = datetime(2025, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)
S = RunState


async def _history(store: SqlStore, job: JobRecord) -> list[RunRecord]:
    """Eight runs, oldest first: two active ones first, then six finished a day apart."""
    created = await store.create_runs(
        [NewRun(job.id, T0 + i * timedelta(minutes=1)) for i in range(8)], Actor.USER, T0
    )
    claimed, running, *finished = created
    await store.transition(
        [
            Transition(claimed.id, S.CLAIMED, frozenset({S.SCHEDULED}), Actor.WORKER, worker="w"),
            Transition(running.id, S.CLAIMED, frozenset({S.SCHEDULED}), Actor.WORKER, worker="w"),
            Transition(running.id, S.RUNNING, frozenset({S.CLAIMED}), Actor.WORKER, pid=1),
        ],
        T0,
    )
    for day, run in enumerate(finished):
        target = S.SKIPPED if day == 0 else S.SUCCEEDED if day % 2 else S.FAILED
        source = S.SCHEDULED if target is S.SKIPPED else S.CLAIMED
        if source is S.CLAIMED:
            await store.transition(
                [Transition(run.id, S.CLAIMED, frozenset({S.SCHEDULED}), Actor.WORKER)], T0
            )
        await store.transition(
            [Transition(run.id, target, frozenset({source}), Actor.WORKER, exit_code=day)],
            T0 + day * DAY,
        )
        await store.append_output([OutputChunk(run.id, 0, "stdout", "out", T0)])
    return created


async def _ids(store: SqlStore, job: JobRecord) -> list[int]:
    return sorted(run.id for run in await store.list_runs(job.id, limit=100))


async def test_keep_newest_finished_runs(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=None, now=T0)
    other = await add_job("other", cursor=None, now=T0)
    runs = await _history(store, job)
    others = await _history(store, other)
    ids = [run.id for run in runs]

    assert await store.prune_runs(job.id, 2, None, batch=100) == 4
    # The two active runs are older than every finished one and still stay.
    assert await _ids(store, job) == ids[:2] + ids[-2:]
    assert len(await _ids(store, other)) == len(others)
    # Their events and output went with them.
    async with store.engine.connect() as connection:
        for table in (run_events, output_chunks):
            orphans = await connection.scalar(
                select(func.count()).where(table.c.run_id.in_(ids[2:6]))
            )
            assert orphans == 0, table.name
    assert await store.prune_runs(job.id, 2, None, batch=100) == 0


async def test_prune_in_batches_oldest_first(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=None, now=T0)
    ids = [run.id for run in await _history(store, job)]
    assert await store.prune_runs(job.id, 1, None, batch=3) == 3
    assert await _ids(store, job) == ids[:2] + ids[5:]
    assert await store.prune_runs(job.id, 1, None, batch=3) == 2
    assert await _ids(store, job) == ids[:2] + ids[7:]
    assert await store.prune_runs(job.id, 1, None, batch=3) == 0


async def test_keep_days_cutoff(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=None, now=T0)
    ids = [run.id for run in await _history(store, job)]
    # Finished at T0 + 0..5 days: strictly before T0 + 3 days are the first three.
    assert await store.prune_runs(job.id, None, T0 + 3 * DAY, batch=100) == 3
    assert await _ids(store, job) == ids[:2] + ids[5:]
    # Either rule deletes: keep 10 runs but nothing older than 5 days.
    assert await store.prune_runs(job.id, 10, T0 + 5 * DAY, batch=100) == 2
    assert await _ids(store, job) == ids[:2] + ids[7:]


async def test_prune_never_touches_active_runs(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=None, now=T0)
    ids = [run.id for run in await _history(store, job)]
    assert await store.prune_runs(job.id, 0, T0 + 1000 * DAY, batch=100) == 6
    assert await _ids(store, job) == ids[:2]
    assert await store.prune_runs(job.id, None, None, batch=100) == 0
