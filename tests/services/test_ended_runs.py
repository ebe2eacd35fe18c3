"""The reader of ended runs that alerts and chains share, on real stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from belfry.adapters.store import SqlStore
from belfry.core.jobs import JobSpec
from belfry.core.records import JobWrite, NewRun, Transition
from belfry.core.states import Actor, RunState
from belfry.services.ended_runs import IDLE_STEP, OVERLAP, EndedRuns

T0 = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


async def _skipped_at(store: SqlStore, count: int, at: datetime) -> list[int]:
    """``count`` runs of a new job that all end at the instant ``at`` (a group commit)."""
    name = f"job-{at:%H%M%S}-{count}"
    await store.apply_jobs(
        [JobWrite(JobSpec(name=name, schedule="@daily", command="true"), T0)], [], T0
    )
    job = await store.get_job("default", name)
    assert job is not None
    made = await store.create_runs(
        [NewRun(job.id, T0 + timedelta(minutes=n)) for n in range(count)], Actor.SCHEDULER, T0
    )
    changes = [
        Transition(run.id, RunState.SKIPPED, frozenset({RunState.SCHEDULED}), Actor.SCHEDULER)
        for run in made
    ]
    await store.transition(changes, at)
    return [run.id for run in made]


async def test_each_ended_run_is_handed_out_once_even_in_a_burst(store: SqlStore) -> None:
    reader = EndedRuns(store, "test", pass_limit=4)
    burst = await _skipped_at(store, 10, T0)
    handed: list[int] = []
    # Ten runs ended at one instant, more than a pass takes: passes of 4, 4 and 2, each
    # run once, though the overlap re-reads them all each time.
    for size in (4, 4, 2):
        now = T0 + timedelta(seconds=1)
        ended, mark = await reader.read(now)
        assert len(ended) == size
        handed += [run.id for run in ended]
        await reader.advance(ended, mark, now)
    assert handed == burst
    assert await store.get_mark("test") == T0
    later = await _skipped_at(store, 3, T0 + timedelta(seconds=5))
    ended, mark = await reader.read(T0 + timedelta(seconds=6))
    assert [run.id for run in ended] == later
    await reader.advance(ended, mark, T0 + timedelta(seconds=6))
    assert await store.get_mark("test") == T0 + timedelta(seconds=5)
    # A new reader (a new leader) hands the overlap out again: passes are idempotent.
    ended, _ = await EndedRuns(store, "test").read(T0 + timedelta(seconds=7))
    assert [run.id for run in ended] == burst + later


async def test_the_mark_follows_time_in_steps_when_nothing_ends(store: SqlStore) -> None:
    reader = EndedRuns(store, "test")
    start = T0 + OVERLAP + IDLE_STEP
    ended, mark = await reader.read(start)
    assert ended == []
    await reader.advance(ended, mark, start)
    first = await store.get_mark("test")
    assert first == start - OVERLAP
    # A second later: no write (the mark is not a second-by-second heartbeat).
    await reader.advance([], first, start + timedelta(seconds=1))
    assert await store.get_mark("test") == first
    await reader.advance([], first, start + IDLE_STEP)
    assert await store.get_mark("test") == start + IDLE_STEP - OVERLAP
