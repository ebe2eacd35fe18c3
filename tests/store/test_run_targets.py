"""Store contract: run targets (``target: all``) in the occurrence key and in claims."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from belfry.adapters.store import SqlStore, open_store
from belfry.core.records import JobAdvance, JobRecord, NewRun, Transition, Trigger
from belfry.core.states import ACTIVE_STATES, Actor, RunState

AddJob = Callable[..., Awaitable[JobRecord]]

T0 = datetime(2025, 3, 1, 12, 0, 0, 654321, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
S = RunState


async def test_one_occurrence_has_one_run_per_target(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=T0, now=T0)
    made = await store.create_runs(
        [
            NewRun(job.id, T0, target="w1"),
            NewRun(job.id, T0, target="w2"),
            NewRun(job.id, T0),  # the untargeted run of the same occurrence
            NewRun(job.id, T0, target="w1"),  # a second run for w1: dropped
        ],
        Actor.SCHEDULER,
        T0,
    )
    assert [run.target for run in made] == ["w1", "w2", None]
    again = await store.create_runs(
        [NewRun(job.id, T0, target="w2"), NewRun(job.id, T0, target="w3")], Actor.USER, T0
    )
    assert [run.target for run in again] == ["w3"]
    stored = await store.list_runs(job.id)
    assert sorted(run.target or "" for run in stored) == ["", "w1", "w2", "w3"]
    assert {(run.scheduled_for, run.attempt) for run in stored} == {(T0, 1)}
    # The run that was kept is the first, with its own creation event only.
    first = min(stored, key=lambda run: run.id)
    assert [event.actor for event in await store.run_events(first.id)] == [Actor.SCHEDULER]


async def test_advance_inserts_a_run_per_target_once(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=T0, now=T0)
    runs = [NewRun(job.id, T0, target=name) for name in ("a", "b")]
    runs += [NewRun(job.id, T0 + MINUTE, target=name) for name in ("a", "b", "a")]
    assert await store.advance_jobs([JobAdvance(job.id, T0, T0 + 2 * MINUTE, runs)], T0) == 1
    stored = await store.list_runs(job.id)
    assert Counter((run.scheduled_for, run.target) for run in stored) == {
        (T0, "a"): 1,
        (T0, "b"): 1,
        (T0 + MINUTE, "a"): 1,
        (T0 + MINUTE, "b"): 1,
    }


async def test_racing_inserts_of_one_target_make_one_run(
    store: SqlStore, store_url: str, add_job: AddJob
) -> None:
    job = await add_job("job", cursor=T0, now=T0)
    rival = await open_store(store_url)
    try:
        wanted = [NewRun(job.id, T0, target=f"w{n}") for n in range(5)]
        results = await asyncio.gather(
            *(s.create_runs(wanted, Actor.SCHEDULER, T0) for s in (store, rival) * 3)
        )
    finally:
        await rival.close()
    assert sum(len(made) for made in results) == 5
    stored = await store.list_runs(job.id)
    assert sorted(run.target or "" for run in stored) == [f"w{n}" for n in range(5)]


async def test_an_untargeted_run_reads_as_none(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=T0, now=T0)
    [run] = await store.create_runs([NewRun(job.id, T0)], Actor.SCHEDULER, T0)
    assert run.target is None
    fetched = await store.get_run(run.id)
    assert fetched is not None and fetched.target is None


async def test_due_runs_for_a_worker_leave_out_other_workers_runs(
    store: SqlStore, add_job: AddJob
) -> None:
    job = await add_job("job", cursor=T0, now=T0)
    # Many runs waiting for a worker that is gone come first; they must not crowd out
    # the runs this worker may take.
    await store.create_runs(
        [NewRun(job.id, T0 + n * timedelta(microseconds=1), target="gone") for n in range(5)],
        Actor.SCHEDULER,
        T0,
    )
    mine, anyone = await store.create_runs(
        [NewRun(job.id, T0 + MINUTE, target="me"), NewRun(job.id, T0 + 2 * MINUTE)],
        Actor.SCHEDULER,
        T0,
    )
    until = T0 + 3 * MINUTE
    assert [run.id for run in await store.due_runs(until, 2, for_worker="me")] == [
        mine.id,
        anyone.id,
    ]
    assert [run.target for run in await store.due_runs(until, 10)] == ["gone"] * 5 + ["me", None]
    assert await store.due_runs(until, 10, for_worker="gone") != []
    assert [run.id for run in await store.due_runs(until, 10, for_worker="other")] == [anyone.id]


async def test_a_retry_keeps_its_target(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=T0, now=T0)
    [run] = await store.create_runs([NewRun(job.id, T0, target="w1")], Actor.SCHEDULER, T0)
    await store.transition(
        [Transition(run.id, S.CLAIMED, frozenset({S.SCHEDULED}), Actor.WORKER, worker="w1")], T0
    )
    retry = NewRun(job.id, T0, attempt=2, trigger=Trigger.RETRY, retry_of=run.id, target="w1")
    await store.transition(
        [Transition(run.id, S.LOST, frozenset(ACTIVE_STATES), Actor.REAPER)], T0, [retry]
    )
    [second] = [r for r in await store.list_runs(job.id) if r.id != run.id]
    assert (second.attempt, second.target, second.state) == (2, "w1", S.SCHEDULED)
