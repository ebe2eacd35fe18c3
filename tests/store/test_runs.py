"""Store contract: advancing cursors, creating runs, transitions, kills and listings."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from belfry.adapters.store import SqlStore, open_store
from belfry.core.jobs import JobSpec
from belfry.core.records import JobAdvance, JobRecord, JobWrite, NewRun, Transition, Trigger
from belfry.core.states import Actor, IllegalTransition, RunState

AddJob = Callable[..., Awaitable[JobRecord]]

T0 = datetime(2025, 3, 1, 12, 0, 0, 654321, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
S = RunState


def change(
    run_id: int, target: RunState, *expected: RunState, actor: Actor = Actor.WORKER, **kw: Any
) -> Transition:
    return Transition(run_id, target, frozenset(expected), actor, **kw)


async def test_advance_moves_the_cursor_and_records_runs(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=T0, now=T0)
    advance = JobAdvance(
        job.id,
        T0,
        T0 + 2 * MINUTE,
        [
            NewRun(job.id, T0),
            NewRun(job.id, T0 + MINUTE, state=S.SKIPPED, reason="paused"),
        ],
    )
    now = T0 + timedelta(seconds=1)
    assert await store.advance_jobs([advance], now) == 1

    moved = await store.get_job("default", "job")
    assert moved is not None
    assert moved.next_fire_at == T0 + 2 * MINUTE
    fired, skipped = sorted(await store.list_runs(job.id), key=lambda run: run.scheduled_for)
    assert (fired.job, fired.state, fired.trigger, fired.attempt) == (
        "default/job",
        S.SCHEDULED,
        Trigger.SCHEDULE,
        1,
    )
    assert (fired.not_before, fired.created_at, fired.finished_at) == (T0, now, None)
    assert (skipped.state, skipped.reason, skipped.finished_at) == (S.SKIPPED, "paused", now)

    [born] = await store.run_events(fired.id)
    assert (born.state, born.actor, born.at, born.reason) == (
        S.SCHEDULED,
        Actor.SCHEDULER,
        now,
        None,
    )
    [skip] = await store.run_events(skipped.id)
    assert (skip.state, skip.actor, skip.reason) == (S.SKIPPED, Actor.SCHEDULER, "paused")


async def test_advance_is_compare_and_set(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=T0, now=T0)
    first = JobAdvance(job.id, T0, T0 + MINUTE, [NewRun(job.id, T0)])
    rival = JobAdvance(job.id, T0, T0 + 5 * MINUTE, [NewRun(job.id, T0, attempt=7)])

    assert await store.advance_jobs([first], T0) == 1
    assert await store.advance_jobs([rival], T0) == 0

    job_now = await store.get_job("default", "job")
    assert job_now is not None
    assert job_now.next_fire_at == T0 + MINUTE
    assert [run.attempt for run in await store.list_runs(job.id)] == [1]


async def test_advance_applies_only_matching_cursors(store: SqlStore) -> None:
    await store.apply_jobs([JobWrite(_spec(name), T0) for name in "abc"], [], T0)
    a, b, c = await store.list_jobs()
    advances = [
        JobAdvance(a.id, T0, T0 + MINUTE, [NewRun(a.id, T0)]),
        JobAdvance(b.id, T0 - MINUTE, T0 + MINUTE, [NewRun(b.id, T0 - MINUTE)]),  # stale
        JobAdvance(c.id, T0, None, [NewRun(c.id, T0)]),  # the schedule ended
    ]
    assert await store.advance_jobs(advances, T0) == 2
    assert {run.job for run in await store.list_runs()} == {"default/a", "default/c"}
    cursors = {job.spec.name: job.next_fire_at for job in await store.list_jobs()}
    assert cursors == {"a": T0 + MINUTE, "b": T0, "c": None}
    assert await store.next_cursor() == T0


async def test_advance_never_duplicates_an_occurrence(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=T0, now=T0)
    [manual] = await store.create_runs([NewRun(job.id, T0, trigger=Trigger.MANUAL)], Actor.USER, T0)

    advance = JobAdvance(
        job.id, T0, T0 + MINUTE, [NewRun(job.id, T0), NewRun(job.id, T0, attempt=2)]
    )
    assert await store.advance_jobs([advance], T0) == 1

    listed = await store.list_runs(job.id)
    assert sorted((run.attempt, run.trigger) for run in listed) == [
        (1, Trigger.MANUAL),
        (2, Trigger.SCHEDULE),
    ]
    # The existing run kept its own creation event only.
    assert [event.actor for event in await store.run_events(manual.id)] == [Actor.USER]


async def test_concurrent_advances_fire_each_occurrence_once(
    store: SqlStore, store_url: str
) -> None:
    await store.apply_jobs([JobWrite(_spec(f"j{i}"), T0) for i in range(20)], [], T0)
    jobs = await store.list_jobs()
    rival = await open_store(store_url)
    try:
        for round_ in range(3):
            expected = T0 + round_ * MINUTE

            mine = [
                JobAdvance(job.id, expected, expected + MINUTE, [NewRun(job.id, expected)])
                for job in jobs
            ]
            # Two schedulers (split brain) saw the same due jobs, listed in other orders.
            applied = await asyncio.gather(
                store.advance_jobs(mine, T0), rival.advance_jobs(mine[::-1], T0)
            )
            assert sum(applied) == len(jobs)
        all_runs = await store.list_runs(limit=1000)
        assert len(all_runs) == 3 * len(jobs)
        assert len({(run.job_id, run.scheduled_for, run.attempt) for run in all_runs}) == len(
            all_runs
        )
    finally:
        await rival.close()


async def test_concurrent_creates_of_one_occurrence_insert_one_run(
    store: SqlStore, store_url: str, add_job: AddJob
) -> None:
    job = await add_job("job", cursor=None, now=T0)
    rival = await open_store(store_url)
    try:
        for attempt in range(1, 6):
            run = NewRun(job.id, T0, attempt=attempt, trigger=Trigger.RETRY)
            results = await asyncio.gather(
                store.create_runs([run], Actor.SCHEDULER, T0),
                rival.create_runs([run], Actor.SCHEDULER, T0),
            )
            assert sorted(len(result) for result in results) == [0, 1]
    finally:
        await rival.close()
    assert len(await store.list_runs(job.id)) == 5


async def test_advance_many_jobs_in_one_call(store: SqlStore) -> None:
    count = 1100  # more than one multi-row statement holds
    await store.apply_jobs([JobWrite(_spec(f"j{i:04}"), T0) for i in range(count)], [], T0)
    jobs = await store.due_jobs(T0, 2000)
    assert len(jobs) == count
    advances = [
        JobAdvance(
            job.id,
            T0,
            T0 + MINUTE,
            [NewRun(job.id, T0), NewRun(job.id, T0 - MINUTE, state=S.SKIPPED, reason="misfire")],
        )
        for job in jobs
    ]
    # A stale copy of one advance rides along: it must not apply twice.
    assert await store.advance_jobs([*advances, advances[7]], T0) == count
    assert len(await store.list_runs(limit=5000)) == 2 * count
    due = await store.due_runs(T0, 5000)
    assert len(due) == count
    assert await store.due_jobs(T0, 10) == []

    # Many runs through the lifecycle in one call per step, each with its own details.
    claimed = await store.transition(
        [change(run.id, S.CLAIMED, S.SCHEDULED, worker=f"w{run.id % 3}") for run in due], T0
    )
    assert {run.id: run.worker for run in claimed} == {run.id: f"w{run.id % 3}" for run in due}
    running = await store.transition(
        [change(run.id, S.RUNNING, S.CLAIMED, host="h", pid=run.id + 1) for run in due], T0
    )
    assert all(run.pid == run.id + 1 for run in running)
    ended = await store.transition(
        [change(run.id, S.FAILED, S.RUNNING, exit_code=run.id % 256) for run in due], T0
    )
    assert len(ended) == count
    assert all(run.exit_code == run.id % 256 and run.state is S.FAILED for run in ended)
    assert [run.id for run in ended] == [run.id for run in due]


async def test_advance_of_one_job_twice_in_one_call(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=T0, now=T0)
    advances = [
        JobAdvance(job.id, T0, T0 + MINUTE, [NewRun(job.id, T0)]),
        JobAdvance(job.id, T0 + MINUTE, T0 + 2 * MINUTE, [NewRun(job.id, T0 + MINUTE)]),
        JobAdvance(job.id, T0, T0 + 5 * MINUTE, [NewRun(job.id, T0, attempt=9)]),  # stale
    ]
    # Applied in order, each against the cursor the previous one left.
    assert await store.advance_jobs(advances, T0) == 2
    moved = await store.get_job("default", "job")
    assert moved is not None
    assert moved.next_fire_at == T0 + 2 * MINUTE
    runs = await store.list_runs(job.id)
    assert sorted((run.scheduled_for, run.attempt) for run in runs) == [
        (T0, 1),
        (T0 + MINUTE, 1),
    ]


async def test_advance_to_the_end_of_schedules(store: SqlStore) -> None:
    await store.apply_jobs([JobWrite(_spec(name), T0) for name in "abc"], [], T0)
    jobs = await store.list_jobs()
    ended = [JobAdvance(job.id, T0, None, [NewRun(job.id, T0)]) for job in jobs]
    assert await store.advance_jobs(ended, T0) == 3
    assert [job.next_fire_at for job in await store.list_jobs()] == [None, None, None]
    assert await store.next_cursor() is None
    assert await store.due_jobs(T0 + 1000 * MINUTE, 10) == []


async def test_transition_without_optional_details(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=None, now=T0)
    created = await store.create_runs(
        [NewRun(job.id, T0 + i * MINUTE) for i in range(3)], Actor.USER, T0
    )
    ids = [run.id for run in created]
    await store.transition([change(i, S.CLAIMED, S.SCHEDULED) for i in ids], T0)
    running = await store.transition([change(i, S.RUNNING, S.CLAIMED) for i in ids], T0)
    assert [(run.host, run.pid, run.worker) for run in running] == [(None, None, None)] * 3
    lost = await store.transition(
        [change(i, S.LOST, S.RUNNING, actor=Actor.REAPER) for i in ids], T0 + MINUTE
    )
    assert [(run.state, run.exit_code, run.finished_at) for run in lost] == [
        (S.LOST, None, T0 + MINUTE)
    ] * 3


async def test_create_runs(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=None, now=T0)
    later = T0 + 10 * MINUTE
    created = await store.create_runs(
        [
            NewRun(job.id, T0, trigger=Trigger.MANUAL),
            NewRun(job.id, T0, attempt=2, trigger=Trigger.RETRY, not_before=later),
        ],
        Actor.USER,
        T0,
    )
    assert [(run.attempt, run.trigger, run.not_before) for run in created] == [
        (1, Trigger.MANUAL, T0),
        (2, Trigger.RETRY, later),
    ]
    assert created[0].id < created[1].id
    assert await store.get_run(created[1].id) == created[1]
    [event] = await store.run_events(created[0].id)
    assert (event.state, event.actor, event.at) == (S.SCHEDULED, Actor.USER, T0)

    # Existing occurrence keys are neither inserted again nor returned.
    again = await store.create_runs(
        [NewRun(job.id, T0), NewRun(job.id, T0, attempt=3)], Actor.USER, T0
    )
    assert [run.attempt for run in again] == [3]
    assert len(await store.run_events(created[0].id)) == 1
    assert await store.create_runs([], Actor.USER, T0) == []


async def test_create_runs_rejects_bad_runs(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=None, now=T0)
    with pytest.raises(ValueError, match="no job"):
        await store.create_runs([NewRun(job.id, T0), NewRun(job.id + 99, T0)], Actor.USER, T0)
    with pytest.raises(IllegalTransition):
        await store.create_runs([NewRun(job.id, T0, state=S.RUNNING)], Actor.USER, T0)
    assert await store.list_runs() == []


async def test_transition_through_the_lifecycle(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=None, now=T0)
    [run] = await store.create_runs([NewRun(job.id, T0)], Actor.USER, T0)
    t1, t2, t3 = (T0 + timedelta(seconds=s, microseconds=s) for s in (1, 2, 3))

    [claimed] = await store.transition(
        [change(run.id, S.CLAIMED, S.SCHEDULED, worker="w-1", host="srv", pid=10)], t1
    )
    assert (claimed.state, claimed.worker, claimed.claimed_at) == (S.CLAIMED, "w-1", t1)
    # The event's host is where the actor ran; the run's host is set when it starts.
    assert claimed.host is None

    [running] = await store.transition(
        [change(run.id, S.RUNNING, S.CLAIMED, host="app-1", pid=4242)], t2
    )
    assert (running.state, running.host, running.pid, running.started_at) == (
        S.RUNNING,
        "app-1",
        4242,
        t2,
    )
    [failed] = await store.transition(
        [change(run.id, S.FAILED, S.RUNNING, host="app-1", pid=4242, exit_code=3, reason="exit 3")],
        t3,
    )
    assert (failed.state, failed.exit_code, failed.finished_at, failed.reason) == (
        S.FAILED,
        3,
        t3,
        "exit 3",
    )
    assert (failed.worker, failed.claimed_at, failed.started_at) == ("w-1", t1, t2)
    assert await store.get_run(run.id) == failed

    events = await store.run_events(run.id)
    assert [(e.state, e.actor, e.at, e.host, e.pid, e.exit_code, e.reason) for e in events] == [
        (S.SCHEDULED, Actor.USER, T0, None, None, None, None),
        (S.CLAIMED, Actor.WORKER, t1, "srv", 10, None, None),
        (S.RUNNING, Actor.WORKER, t2, "app-1", 4242, None, None),
        (S.FAILED, Actor.WORKER, t3, "app-1", 4242, 3, "exit 3"),
    ]


async def test_transition_rejects_a_run_in_another_state(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=None, now=T0)
    [run] = await store.create_runs([NewRun(job.id, T0)], Actor.USER, T0)

    assert await store.transition([change(run.id, S.SUCCEEDED, S.RUNNING, exit_code=0)], T0) == []
    assert await store.transition([change(run.id + 99, S.CLAIMED, S.SCHEDULED)], T0) == []

    assert await store.get_run(run.id) == run
    assert len(await store.run_events(run.id)) == 1


async def test_transition_batches_keep_per_change_details(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=None, now=T0)
    created = await store.create_runs(
        [NewRun(job.id, T0 + i * MINUTE) for i in range(4)], Actor.USER, T0
    )
    a, b, c, d = (run.id for run in created)
    await store.transition([change(c, S.CLAIMED, S.SCHEDULED, worker="w")], T0)

    changed = await store.transition(
        [
            change(d, S.CLAIMED, S.SCHEDULED, worker="w", actor=Actor.USER),
            change(c, S.CLAIMED, S.SCHEDULED, worker="w"),  # already claimed: rejected
            change(a, S.CLAIMED, S.SCHEDULED, worker="w"),
            change(b, S.CLAIMED, S.SCHEDULED, worker="other"),
        ],
        T0 + MINUTE,
    )
    assert [(run.id, run.worker) for run in changed] == [(d, "w"), (a, "w"), (b, "other")]
    assert (await store.run_events(d))[-1].actor == Actor.USER
    assert (await store.run_events(a))[-1].actor == Actor.WORKER
    assert len(await store.run_events(c)) == 2


async def test_transition_of_one_run_twice_in_order(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=None, now=T0)
    [run] = await store.create_runs([NewRun(job.id, T0)], Actor.USER, T0)
    changed = await store.transition(
        [
            change(run.id, S.CLAIMED, S.SCHEDULED, worker="w"),
            change(run.id, S.RUNNING, S.CLAIMED, host="h", pid=1),
        ],
        T0,
    )
    assert [(r.id, r.state) for r in changed] == [(run.id, S.RUNNING)]
    assert [e.state for e in await store.run_events(run.id)] == [S.SCHEDULED, S.CLAIMED, S.RUNNING]


async def test_transition_inserts_retries_atomically(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=None, now=T0)
    [run] = await store.create_runs([NewRun(job.id, T0)], Actor.USER, T0)
    await store.transition([change(run.id, S.CLAIMED, S.SCHEDULED, worker="w")], T0)
    lost = change(run.id, S.LOST, S.CLAIMED, S.RUNNING, actor=Actor.REAPER, reason="worker gone")
    retry = NewRun(job.id, T0, attempt=2, trigger=Trigger.RETRY, not_before=T0 + MINUTE)

    # A failing part (a retry of an unknown job) undoes the whole call.
    with pytest.raises(ValueError):
        await store.transition([lost], T0, [retry, NewRun(job.id + 99, T0)])
    unchanged = await store.get_run(run.id)
    assert unchanged is not None
    assert unchanged.state == S.CLAIMED
    assert len(await store.list_runs(job.id)) == 1

    [ended] = await store.transition([lost], T0 + MINUTE, [retry])
    assert (ended.state, ended.reason, ended.finished_at) == (S.LOST, "worker gone", T0 + MINUTE)
    newest = (await store.list_runs(job.id))[0]
    assert (newest.attempt, newest.trigger, newest.not_before) == (2, Trigger.RETRY, T0 + MINUTE)
    [born] = await store.run_events(newest.id)
    assert (born.state, born.actor) == (S.SCHEDULED, Actor.SCHEDULER)

    # The same retry again (a duplicate report) adds nothing.
    assert await store.transition([], T0, [retry]) == []
    assert len(await store.list_runs(job.id)) == 2


async def test_a_retry_follows_only_an_ending_that_applied(
    store: SqlStore, add_job: AddJob
) -> None:
    job = await add_job("job", cursor=None, now=T0)
    [run] = await store.create_runs([NewRun(job.id, T0)], Actor.USER, T0)
    await store.transition([change(run.id, S.CLAIMED, S.SCHEDULED, worker="w")], T0)
    await store.transition(
        [change(run.id, S.LOST, S.CLAIMED, actor=Actor.REAPER, reason="worker gone")], T0
    )
    # The worker comes back with a late "failed": the run is lost already, so no retry.
    late = change(run.id, S.FAILED, S.CLAIMED, S.RUNNING, exit_code=1)
    retry = NewRun(
        job.id, T0, attempt=2, trigger=Trigger.RETRY, not_before=T0 + MINUTE, retry_of=run.id
    )
    assert await store.transition([late], T0 + MINUTE, [retry]) == []
    assert [r.attempt for r in await store.list_runs(job.id)] == [1]


async def test_request_kill_only_on_active_runs(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=None, now=T0)
    scheduled, claimed, running, done = await store.create_runs(
        [NewRun(job.id, T0 + i * MINUTE) for i in range(4)], Actor.USER, T0
    )
    await store.transition(
        [
            change(claimed.id, S.CLAIMED, S.SCHEDULED, worker="w"),
            change(running.id, S.CLAIMED, S.SCHEDULED, worker="w"),
            change(running.id, S.RUNNING, S.CLAIMED, host="h", pid=1),
            change(done.id, S.KILLED, S.SCHEDULED, actor=Actor.USER),
        ],
        T0,
    )
    now = T0 + MINUTE
    assert await store.request_kill(scheduled.id, Actor.USER, now) is None
    assert await store.request_kill(done.id, Actor.USER, now) is None
    assert await store.request_kill(done.id + 99, Actor.USER, now) is None
    for run in (claimed, running):
        flagged = await store.request_kill(run.id, Actor.USER, now)
        assert flagged is not None
        assert flagged.kill_requested
        event = (await store.run_events(run.id))[-1]
        assert (event.actor, event.at, event.state) == (Actor.USER, now, flagged.state)
        assert event.reason
    untouched = await store.get_run(scheduled.id)
    assert untouched is not None
    assert not untouched.kill_requested
    assert len(await store.run_events(scheduled.id)) == 1


async def test_list_runs_filters_and_pages(store: SqlStore) -> None:
    await store.apply_jobs([JobWrite(_spec("a"), None), JobWrite(_spec("b"), None)], [], T0)
    a, b = await store.list_jobs()
    created = await store.create_runs(
        [NewRun(job.id, T0 + i * MINUTE) for i in range(5) for job in (a, b)], Actor.USER, T0
    )
    await store.transition([change(run.id, S.SKIPPED, S.SCHEDULED) for run in created[::3]], T0)
    ids = [run.id for run in created]

    assert [run.id for run in await store.list_runs()] == ids[::-1]
    assert [run.id for run in await store.list_runs(limit=3)] == ids[::-1][:3]
    assert [run.id for run in await store.list_runs(a.id)] == ids[0::2][::-1]
    skipped = {run.id for run in created[::3]}
    assert [run.id for run in await store.list_runs(states=[S.SKIPPED])] == sorted(
        skipped, reverse=True
    )
    both = await store.list_runs(b.id, states=[S.SCHEDULED, S.SKIPPED], limit=2)
    assert [run.id for run in both] == [ids[9], ids[7]]
    assert await store.list_runs(states=[]) == []

    pages: list[int] = []
    before: int | None = None
    while page := await store.list_runs(b.id, limit=2, before_id=before):
        pages.extend(run.id for run in page)
        before = page[-1].id
    assert pages == ids[1::2][::-1]


async def test_due_runs_and_next_run_due(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=None, now=T0)
    assert await store.next_run_due() is None
    created = await store.create_runs(
        [
            NewRun(job.id, T0 + 2 * MINUTE),
            NewRun(job.id, T0, not_before=T0 + 3 * MINUTE),
            NewRun(job.id, T0 + MINUTE),
            NewRun(job.id, T0 - MINUTE),  # will be claimed, so no longer due
            NewRun(job.id, T0 - 2 * MINUTE, state=S.SKIPPED, reason="misfire"),
        ],
        Actor.USER,
        T0,
    )
    await store.transition([change(created[3].id, S.CLAIMED, S.SCHEDULED)], T0)

    due = await store.due_runs(T0 + 2 * MINUTE, 10)
    assert [run.id for run in due] == [created[2].id, created[0].id]
    assert [run.id for run in await store.due_runs(T0 + 3 * MINUTE, 2)] == [
        created[2].id,
        created[0].id,
    ]
    assert await store.due_runs(T0, 10) == []
    assert await store.next_run_due() == T0 + MINUTE


async def test_runs_in_states(store: SqlStore) -> None:
    await store.apply_jobs([JobWrite(_spec("a"), None), JobWrite(_spec("b"), None)], [], T0)
    a, b = await store.list_jobs()
    created = await store.create_runs(
        [NewRun(job.id, T0 + i * MINUTE) for i in range(3) for job in (a, b)], Actor.USER, T0
    )
    await store.transition(
        [change(run.id, S.CLAIMED, S.SCHEDULED, worker="w") for run in created[:3]], T0
    )
    await store.transition([change(created[3].id, S.CLAIMED, S.SCHEDULED, worker="v")], T0)
    await store.transition(
        [change(run.id, S.RUNNING, S.CLAIMED, host="h", pid=1) for run in created[:2]], T0
    )

    active = await store.runs_in_states([S.CLAIMED, S.RUNNING])
    assert [run.id for run in active] == [run.id for run in created[:4]]
    of_b = await store.runs_in_states([S.CLAIMED, S.SCHEDULED], [b.id])
    assert [run.id for run in of_b] == [created[3].id, created[5].id]
    assert await store.runs_in_states([S.RUNNING], []) == []
    assert await store.runs_in_states([]) == []
    held_by_v = await store.runs_in_states([S.CLAIMED, S.RUNNING], worker="v")
    assert [run.id for run in held_by_v] == [created[3].id]


async def test_get_run_of_unknown_id(store: SqlStore) -> None:
    assert await store.get_run(12345) is None
    assert await store.run_events(12345) == []


def _spec(name: str) -> JobSpec:
    return JobSpec(name=name, schedule="* * * * *", command="true")
