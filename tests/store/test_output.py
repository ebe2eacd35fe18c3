"""Store contract: output chunks (exactly once per sequence number, in order)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from belfry.adapters.store import SqlStore
from belfry.core.records import JobRecord, NewRun, OutputChunk
from belfry.core.states import Actor

AddJob = Callable[..., Awaitable[JobRecord]]

T0 = datetime(2025, 3, 1, 12, 0, 0, 1, tzinfo=UTC)


async def test_output_is_stored_once_and_read_in_order(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=None, now=T0)
    [run] = await store.create_runs([NewRun(job.id, T0)], Actor.USER, T0)
    at = [T0 + timedelta(microseconds=i) for i in range(4)]

    await store.append_output(
        [
            OutputChunk(run.id, 2, "stderr", "two\n", at[2]),
            OutputChunk(run.id, 0, "stdout", "zero\n", at[0]),
        ]
    )
    # A re-sent batch overlaps what is stored: the first copy of a seq wins.
    await store.append_output(
        [
            OutputChunk(run.id, 1, "stdout", "one\n", at[1]),
            OutputChunk(run.id, 2, "stderr", "TWO AGAIN\n", at[3]),
            OutputChunk(run.id, 3, "belfry", "[truncated]", at[3]),
        ]
    )
    await store.append_output([])

    chunks = await store.read_output(run.id)
    assert chunks == [
        OutputChunk(run.id, 0, "stdout", "zero\n", at[0]),
        OutputChunk(run.id, 1, "stdout", "one\n", at[1]),
        OutputChunk(run.id, 2, "stderr", "two\n", at[2]),
        OutputChunk(run.id, 3, "belfry", "[truncated]", at[3]),
    ]
    assert [c.seq for c in await store.read_output(run.id, after_seq=1)] == [2, 3]
    assert [c.seq for c in await store.read_output(run.id, after_seq=0, limit=2)] == [1, 2]
    assert await store.read_output(run.id, after_seq=3) == []


async def test_output_is_per_run(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=None, now=T0)
    first, second = await store.create_runs(
        [NewRun(job.id, T0), NewRun(job.id, T0, attempt=2)], Actor.USER, T0
    )
    await store.append_output(
        [
            OutputChunk(first.id, 0, "stdout", "first", T0),
            OutputChunk(second.id, 0, "stdout", "second", T0),
        ]
    )
    assert [c.data for c in await store.read_output(first.id)] == ["first"]
    assert [c.data for c in await store.read_output(second.id)] == ["second"]


async def test_output_of_a_vanished_run_is_dropped(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=None, now=T0)
    [run] = await store.create_runs([NewRun(job.id, T0)], Actor.USER, T0)
    await store.append_output(
        [
            OutputChunk(run.id + 1000, 0, "stdout", "orphan", T0),
            OutputChunk(run.id, 0, "stdout", "kept", T0),
        ]
    )
    assert [c.data for c in await store.read_output(run.id)] == ["kept"]
    assert await store.read_output(run.id + 1000) == []


async def test_output_keeps_text_exactly(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("job", cursor=None, now=T0)
    [run] = await store.create_runs([NewRun(job.id, T0)], Actor.USER, T0)
    text = "naïve ✓ \t\r\n" + "x" * 100_000 + "\n'; DROP TABLE runs; --"
    await store.append_output([OutputChunk(run.id, 0, "stdout", text, T0)])
    [chunk] = await store.read_output(run.id)
    assert chunk.data == text
