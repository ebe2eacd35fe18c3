"""Store contract: maintenance windows, deferred runs, pauses with a resume time, drains."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from belfry.adapters.store import SqlStore
from belfry.core.maintenance import DEFERRED_MARK, MaintenanceWindow
from belfry.core.records import JobRecord, NewRun, WorkerRecord
from belfry.core.states import Actor, RunState
from tests.store.conftest import AddJob

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def _one_run(job: JobRecord, skipped: int) -> list[NewRun]:
    return [NewRun(job.id, T0 + 10 * MINUTE, reason=f"owed {skipped}")]


async def test_windows_start_keep_their_start_and_end_once(store: SqlStore) -> None:
    first = MaintenanceWindow("db", "one", T0, "alice")
    assert await store.start_maintenance(first) == (None, first)
    before, after = await store.start_maintenance(
        MaintenanceWindow("db", "two", T0 + MINUTE, "bob")
    )
    assert before == first
    assert after == MaintenanceWindow("db", "two", T0, "alice")  # the window goes on
    await store.start_maintenance(MaintenanceWindow("*", None, T0, "root"))
    assert [w.scope for w in await store.list_maintenance()] == ["*", "db"]
    ended = await store.end_maintenance("db", T0 + MINUTE, _one_run)
    assert ended is not None and ended.window == after and ended.runs == []
    assert await store.end_maintenance("db", T0 + MINUTE, _one_run) is None
    assert [w.scope for w in await store.list_maintenance()] == ["*"]


async def test_ending_makes_the_runs_owed_to_defer_jobs_it_covered(
    store: SqlStore, add_job: AddJob
) -> None:
    deferred = await add_job("d", "g", cursor=T0, now=T0, on_maintenance="defer")
    skipper = await add_job("s", "g", cursor=T0, now=T0)
    quiet = await add_job("q", "g", cursor=T0, now=T0, on_maintenance="defer")
    await store.start_maintenance(MaintenanceWindow("g", None, T0, "alice"))
    skips = [
        NewRun(job.id, T0 + n * MINUTE, state=RunState.SKIPPED, reason="maintenance" + mark)
        for n in range(3)
        for job, mark in ((deferred, DEFERRED_MARK), (skipper, ""))
    ]
    await store.create_runs(skips, Actor.SCHEDULER, T0 + 3 * MINUTE)
    ended = await store.end_maintenance("g", T0 + 4 * MINUTE, _one_run)
    assert ended is not None
    # Only the defer job that missed occurrences is owed, one run for all three.
    assert [(run.job, run.reason, run.state) for run in ended.runs] == [
        ("g/d", "owed 3", RunState.SCHEDULED)
    ]
    assert quiet.id not in {run.job_id for run in ended.runs}


async def test_a_window_still_in_force_holds_the_owed_run(store: SqlStore, add_job: AddJob) -> None:
    job = await add_job("d", "g", cursor=T0, now=T0, on_maintenance="defer")
    await store.start_maintenance(MaintenanceWindow("*", None, T0, "root"))
    await store.start_maintenance(MaintenanceWindow("g", None, T0, "alice"))
    skip = NewRun(job.id, T0, state=RunState.SKIPPED, reason="maintenance" + DEFERRED_MARK)
    await store.create_runs([skip], Actor.SCHEDULER, T0 + MINUTE)
    ended = await store.end_maintenance("g", T0 + 2 * MINUTE, _one_run)
    assert ended is not None and ended.runs == []  # everything is still in maintenance


async def test_paused_jobs_resume_when_their_time_comes(store: SqlStore, add_job: AddJob) -> None:
    soon = await add_job("soon", cursor=T0, now=T0)
    later = await add_job("later", cursor=T0, now=T0)
    by_hand = await add_job("by-hand", cursor=T0, now=T0)
    await store.set_paused(soon.id, True, "a", T0, resume_at=T0 + MINUTE)
    await store.set_paused(later.id, True, "b", T0, resume_at=T0 + 2 * MINUTE)
    await store.set_paused(by_hand.id, True, "c", T0)
    assert await store.next_resume_at() == T0 + MINUTE
    assert await store.resume_due_jobs(T0) == []
    resumed = await store.resume_due_jobs(T0 + MINUTE)
    assert [(job.spec.name, job.paused, job.pause_note) for job in resumed] == [
        ("soon", False, None)
    ]
    assert await store.next_resume_at() == T0 + 2 * MINUTE
    await store.set_paused(later.id, False, None, T0 + MINUTE)  # resumed by hand first
    assert await store.next_resume_at() is None
    assert await store.resume_due_jobs(T0 + 3 * MINUTE) == []


async def test_a_drained_worker_reads_draining_whatever_its_heartbeat_says(
    store: SqlStore,
) -> None:
    assert await store.set_drain("nobody", True) is None
    await store.save_worker(
        WorkerRecord("w1", "h", ["default"], {}, None, None, None, "1", "active", T0, T0)
    )
    drained = await store.set_drain("w1", True)
    assert drained is not None and drained.state == "draining"
    touched = await store.touch_worker("w1", T0 + MINUTE, "active")
    assert touched is not None and touched.state == "draining"
    undrained = await store.set_drain("w1", False)
    assert undrained is not None and undrained.state == "active"
