"""Store contract: jobs (apply, read, pause, due, cursors, time precision)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select

from belfry.adapters.store import SqlStore
from belfry.adapters.store.schema import output_chunks, run_events, runs
from belfry.core.jobs import JobSpec
from belfry.core.records import JobAdvance, JobRecord, JobWrite, NewRun, OutputChunk, Transition
from belfry.core.states import Actor, RunState

AddJob = Callable[..., Awaitable[JobRecord]]
T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def spec(name: str, group: str = "default", **fields: Any) -> JobSpec:
    return JobSpec(name=name, group=group, schedule="* * * * *", command="true", **fields)


async def test_create_and_read_jobs(store: SqlStore) -> None:
    writes = [
        JobWrite(spec("x", "b"), T0),
        JobWrite(spec("y", "a", description="why"), T0 + MINUTE),
        JobWrite(spec("x", "a"), None),
    ]
    await store.apply_jobs(writes, [], T0)

    listed = await store.list_jobs()
    assert [str(job.key) for job in listed] == ["a/x", "a/y", "b/x"]
    assert [str(job.key) for job in await store.list_jobs("a")] == ["a/x", "a/y"]
    assert await store.list_jobs("nope") == []

    job = await store.get_job("a", "y")
    assert job is not None
    assert job.spec == writes[1].spec
    assert job.next_fire_at == T0 + MINUTE
    assert (job.paused, job.pause_note) == (False, None)
    assert job.created_at == job.updated_at == T0
    assert await store.get_job("a", "z") is None

    by_id = await store.get_jobs([job.id, listed[0].id, 999_999])
    assert set(by_id) == {job.id, listed[0].id}
    assert by_id[job.id] == job
    assert await store.get_jobs([]) == {}


async def test_duplicate_create_changes_nothing(store: SqlStore, add_job: AddJob) -> None:
    await add_job("taken", cursor=T0, now=T0)
    other = await add_job("other", cursor=T0, now=T0)
    doomed = await add_job("doomed", cursor=T0, now=T0)
    before = await store.list_jobs()

    with pytest.raises(ValueError, match="taken"):
        await store.apply_jobs(
            [
                JobWrite(spec("fresh"), T0),
                JobWrite(spec("other", description="changed"), T0, job_id=other.id),
                JobWrite(spec("taken"), T0),
            ],
            [doomed.id],
            T0 + MINUTE,
        )

    # Not even the delete, the replace or the valid create happened.
    assert await store.list_jobs() == before


async def test_same_job_twice_in_one_apply_is_rejected(store: SqlStore) -> None:
    with pytest.raises(ValueError, match="default/twice"):
        await store.apply_jobs([JobWrite(spec("twice"), T0), JobWrite(spec("twice"), T0)], [], T0)
    assert await store.list_jobs() == []


async def test_delete_and_recreate_in_one_apply(store: SqlStore, add_job: AddJob) -> None:
    old = await add_job("same", cursor=T0, now=T0)
    await store.apply_jobs([JobWrite(spec("same"), T0 + MINUTE)], [old.id], T0 + MINUTE)
    new = await store.get_job("default", "same")
    assert new is not None
    assert new.id != old.id
    assert new.next_fire_at == T0 + MINUTE


async def test_replace_keeps_or_resets_the_cursor(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=T0, now=T0)
    later = T0 + timedelta(hours=1)

    await store.apply_jobs(
        [JobWrite(spec("job", description="v2"), T0 + 5 * MINUTE, job.id, reset_cursor=False)],
        [],
        later,
    )
    kept = await store.get_job("default", "job")
    assert kept is not None
    assert kept.id == job.id
    assert kept.spec.description == "v2"
    assert kept.next_fire_at == T0
    assert (kept.created_at, kept.updated_at) == (T0, later)

    await store.apply_jobs([JobWrite(spec("job"), T0 + 5 * MINUTE, job.id)], [], later)
    reset = await store.get_job("default", "job")
    assert reset is not None
    assert reset.next_fire_at == T0 + 5 * MINUTE
    assert reset.spec.description == ""


async def test_replace_of_a_missing_job_changes_nothing(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=T0, now=T0)
    with pytest.raises(ValueError, match="no job"):
        await store.apply_jobs(
            [
                JobWrite(spec("job", description="v2"), T0, job.id),
                JobWrite(spec("ghost"), T0, job.id + 1000),
            ],
            [],
            T0,
        )
    assert await store.list_jobs() == [job]


async def test_rename_by_replace_renames_its_runs(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("old", cursor=T0, now=T0)
    await store.create_runs([NewRun(job.id, T0)], Actor.USER, T0)
    await store.apply_jobs([JobWrite(spec("new", "g2"), T0, job.id, False)], [], T0)
    assert [run.job for run in await store.list_runs(job.id)] == ["g2/new"]
    assert await store.get_job("default", "old") is None


async def test_replace_into_an_existing_name_fails(store: SqlStore, add_job: AddJob) -> None:
    first = await add_job("first", cursor=T0, now=T0)
    await add_job("second", cursor=T0, now=T0)
    before = await store.list_jobs()
    with pytest.raises(ValueError):
        await store.apply_jobs([JobWrite(spec("second"), T0, first.id)], [], T0)
    assert await store.list_jobs() == before


async def test_paused_follows_the_spec_on_every_write(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=T0, now=T0, paused=True)
    assert job.paused

    await store.apply_jobs([JobWrite(spec("job"), T0, job.id)], [], T0)
    resumed = await store.get_job("default", "job")
    assert resumed is not None
    assert not resumed.paused

    paused = await store.set_paused(job.id, True, "maintenance", T0 + MINUTE)
    assert paused is not None
    assert (paused.paused, paused.pause_note, paused.updated_at) == (
        True,
        "maintenance",
        T0 + MINUTE,
    )
    # The spec says "not paused": an apply resumes the job and drops the note.
    await store.apply_jobs([JobWrite(spec("job"), T0, job.id, reset_cursor=False)], [], T0)
    again = await store.get_job("default", "job")
    assert again is not None
    assert (again.paused, again.pause_note) == (False, None)


async def test_set_paused(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=T0, now=T0)
    paused = await store.set_paused(job.id, True, "disk full", T0 + MINUTE)
    assert paused is not None
    assert (paused.paused, paused.pause_note) == (True, "disk full")
    assert await store.get_job("default", "job") == paused
    resumed = await store.set_paused(job.id, False, None, T0 + 2 * MINUTE)
    assert resumed is not None
    assert (resumed.paused, resumed.pause_note, resumed.updated_at) == (
        False,
        None,
        T0 + 2 * MINUTE,
    )
    assert await store.set_paused(job.id + 1000, True, None, T0) is None


async def test_delete_cascades_to_runs_events_and_output(store: SqlStore, add_job: AddJob) -> None:
    doomed = await add_job("doomed", cursor=T0, now=T0)
    kept = await add_job("kept", cursor=T0, now=T0)
    created = await store.create_runs([NewRun(doomed.id, T0), NewRun(kept.id, T0)], Actor.USER, T0)
    for run in created:
        await store.transition(
            [Transition(run.id, RunState.CLAIMED, frozenset({RunState.SCHEDULED}), Actor.WORKER)],
            T0,
        )
        await store.append_output([OutputChunk(run.id, 0, "stdout", "hi\n", T0)])

    await store.apply_jobs([], [doomed.id], T0)

    assert await store.get_job("default", "doomed") is None
    assert await store.get_run(created[0].id) is None
    assert await store.run_events(created[0].id) == []
    assert await store.read_output(created[0].id) == []
    # Counted in the tables themselves: nothing orphaned is left behind.
    async with store.engine.connect() as connection:
        for table in (runs, run_events, output_chunks):
            column = table.c.run_id if table is not runs else table.c.id
            count = await connection.scalar(select(func.count()).where(column == created[0].id))
            assert count == 0, table.name
    assert len(await store.run_events(created[1].id)) == 2
    assert len(await store.read_output(created[1].id)) == 1


async def test_due_jobs_earliest_first_with_limit(store: SqlStore) -> None:
    cursors = {
        "c": T0 + 3 * MINUTE,
        "a": T0 + MINUTE,
        "b": T0 + MINUTE,
        "late": T0 + 10 * MINUTE,
        "ended": None,
    }
    await store.apply_jobs([JobWrite(spec(name), at) for name, at in cursors.items()], [], T0)
    await store.apply_jobs([JobWrite(spec("paused", paused=True), T0)], [], T0)

    due = await store.due_jobs(T0 + 3 * MINUTE, 10)
    # Ties on the cursor come out in id (creation) order; `until` is inclusive.
    assert [job.spec.name for job in due] == ["paused", "a", "b", "c"]
    limited = await store.due_jobs(T0 + 3 * MINUTE, 2)
    assert [job.spec.name for job in limited] == ["paused", "a"]
    assert await store.due_jobs(T0 - MINUTE, 10) == []


async def test_next_cursor(store: SqlStore) -> None:
    assert await store.next_cursor() is None
    await store.apply_jobs([JobWrite(spec("ended"), None)], [], T0)
    assert await store.next_cursor() is None
    await store.apply_jobs(
        [JobWrite(spec("a"), T0 + 2 * MINUTE), JobWrite(spec("b"), T0 + MINUTE)], [], T0
    )
    assert await store.next_cursor() == T0 + MINUTE


async def test_times_are_aware_utc_with_microseconds(store: SqlStore, add_job: AddJob) -> None:
    kolkata = timezone(timedelta(hours=5, minutes=30))
    instant = datetime(2025, 3, 1, 17, 30, 0, 1, tzinfo=kolkata)  # 12:00:00.000001 UTC
    job = await add_job("job", cursor=instant, now=instant)

    assert job.next_fire_at == instant
    assert job.next_fire_at is not None
    assert job.next_fire_at.utcoffset() == timedelta(0)
    assert job.next_fire_at.tzinfo is UTC
    assert job.next_fire_at.microsecond == 1
    assert job.created_at.tzinfo is UTC

    # The compare-and-set matches the same instant written in another zone, exactly ...
    utc_instant = instant.astimezone(UTC)
    assert await store.advance_jobs([JobAdvance(job.id, utc_instant, T0 + MINUTE)], T0) == 1
    # ... and one microsecond off is another instant.
    off = T0 + MINUTE + timedelta(microseconds=1)
    assert await store.advance_jobs([JobAdvance(job.id, off, T0 + 2 * MINUTE)], T0) == 0
    # Ordering uses the instant, across days and sub-second differences.
    await store.apply_jobs(
        [
            JobWrite(spec("p"), datetime(2025, 3, 2, 0, 0, 0, 0, tzinfo=UTC)),
            JobWrite(spec("q"), datetime(2025, 3, 1, 23, 59, 59, 999999, tzinfo=UTC)),
            JobWrite(spec("r"), datetime(2025, 3, 1, 23, 59, 59, 999998, tzinfo=UTC)),
        ],
        [],
        T0,
    )
    names = [j.spec.name for j in await store.due_jobs(datetime(2026, 1, 1, tzinfo=UTC), 10)]
    assert names == ["job", "r", "q", "p"]


async def test_naive_datetimes_are_refused(store: SqlStore) -> None:
    with pytest.raises(ValueError, match="naive"):
        await store.apply_jobs([JobWrite(spec("job"), datetime(2025, 1, 1))], [], T0)
    assert await store.list_jobs() == []
