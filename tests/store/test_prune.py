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


async def _prune_counts(store: SqlStore, job: JobRecord, keep: int | None, batch: int) -> int:
    """One round of count pruning for one job, as the pruner does it."""
    beyond = await store.runs_beyond_keep([job.id], keep)
    if job.id not in beyond:
        return 0
    return await store.delete_finished_runs(job.id, beyond[job.id], batch)


async def test_keep_newest_finished_runs(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=None, now=T0)
    other = await add_job("other", cursor=None, now=T0)
    runs = await _history(store, job)
    others = await _history(store, other)
    ids = [run.id for run in runs]

    # Only the job with more finished runs than it keeps is named, with its newest to go.
    assert await store.runs_beyond_keep([job.id], 6) == {}
    assert await store.runs_beyond_keep([job.id], 2) == {job.id: ids[5]}
    assert await _prune_counts(store, job, 2, batch=100) == 4
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
    assert await store.runs_beyond_keep([job.id, other.id], 2) == {other.id: others[5].id}
    assert await _prune_counts(store, job, 2, batch=100) == 0


async def test_a_jobs_own_keep_runs_wins_over_the_default(store: SqlStore, add_job: AddJob) -> None:
    own = await add_job("own", cursor=None, now=T0, retention={"keep_runs": 5})
    default = await add_job("default", cursor=None, now=T0)
    await _history(store, own)
    await _history(store, default)
    beyond = await store.runs_beyond_keep([own.id, default.id], 1)
    assert set(beyond) == {own.id, default.id}
    assert await store.delete_finished_runs(own.id, beyond[own.id], 100) == 1
    assert await store.delete_finished_runs(default.id, beyond[default.id], 100) == 5
    # No default: only the job that sets its own limit is pruned.
    assert await store.runs_beyond_keep([own.id, default.id], None) == {}
    assert len(await _ids(store, own)) == 2 + 5


async def test_prune_in_batches_oldest_first(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=None, now=T0)
    ids = [run.id for run in await _history(store, job)]
    assert await _prune_counts(store, job, 1, batch=3) == 3
    assert await _ids(store, job) == ids[:2] + ids[5:]
    assert await _prune_counts(store, job, 1, batch=3) == 2
    assert await _ids(store, job) == ids[:2] + ids[7:]
    assert await _prune_counts(store, job, 1, batch=3) == 0


async def test_keep_days_cutoff(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=None, now=T0)
    ids = [run.id for run in await _history(store, job)]
    # Finished at T0 + 0..5 days: older than 2.5 days at T0 + 5.5 days are the first three.
    assert await store.prune_aged_runs(T0 + 5.5 * DAY, 2.5, batch=100) == 3
    assert await _ids(store, job) == ids[:2] + ids[5:]
    # In batches, oldest first; no limit at all deletes nothing.
    assert await store.prune_aged_runs(T0 + 5.5 * DAY, None, batch=100) == 0
    assert await store.prune_aged_runs(T0 + 5.5 * DAY, 0.1, batch=1) == 1
    assert await _ids(store, job) == ids[:2] + ids[6:]


async def test_a_jobs_own_keep_days_wins_over_the_default(store: SqlStore, add_job: AddJob) -> None:
    longer = await add_job("longer", cursor=None, now=T0, retention={"keep_days": 100})
    shorter = await add_job("shorter", cursor=None, now=T0, retention={"keep_days": 1})
    default = await add_job("default", cursor=None, now=T0)
    for job in (longer, shorter, default):
        await _history(store, job)
    # At T0 + 6 days with a 3-day default: "shorter" loses its runs older than a day (5),
    # "default" those older than 3 days (3), "longer" none; one call spans the groups.
    assert await store.prune_aged_runs(T0 + 6 * DAY, 3.0, batch=100) == 8
    assert [len(await _ids(store, job)) for job in (longer, shorter, default)] == [8, 3, 5]


async def test_prune_never_touches_active_runs(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=None, now=T0)
    ids = [run.id for run in await _history(store, job)]
    assert await store.prune_aged_runs(T0 + 1000 * DAY, 1.0, batch=100) == 6
    assert await _ids(store, job) == ids[:2]
    assert await _prune_counts(store, job, 0, batch=100) == 0
    assert await _ids(store, job) == ids[:2]


async def test_the_jobs_with_new_runs(store: SqlStore, add_job: AddJob) -> None:
    quiet = await add_job("quiet", cursor=None, now=T0)
    busy = await add_job("busy", cursor=None, now=T0)
    assert await store.newest_run_id() == 0
    await _history(store, quiet)
    mark = await store.newest_run_id()
    await _history(store, busy)
    newest = await store.newest_run_id()
    assert await store.jobs_with_runs_between(0, newest) == sorted([quiet.id, busy.id])
    assert await store.jobs_with_runs_between(mark, newest) == [busy.id]
    assert await store.jobs_with_runs_between(newest, newest) == []
