"""Maintenance windows and pauses that end by themselves, against real stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from belfry.adapters.store import SqlStore, open_store
from belfry.core.jobs import JobSpec
from belfry.core.records import JobWrite
from belfry.core.states import RunState
from belfry.services.maintenance import MaintenanceService
from belfry.services.runs import RunService, WorkerIdentity
from belfry.services.scheduler import Scheduler
from tests.services.fake_clock import FakeClock

T0 = datetime(2027, 3, 1, 12, 0, 0, tzinfo=UTC)


async def _with_jobs(url: str, *specs: JobSpec) -> SqlStore:
    store = await open_store(url)
    await store.apply_jobs([JobWrite(spec, T0) for spec in specs], [], T0)
    return store


def _spec(name: str, **extra: object) -> JobSpec:
    return JobSpec.model_validate(
        {"name": name, "schedule": "* * * * *", "command": "true", **extra}
    )


async def test_maintenance_skips_with_reason_and_defer_coalesces_into_one_run(
    store_url: str,
) -> None:
    store = await _with_jobs(
        store_url,
        _spec("skipper", group="db"),
        _spec("deferrer", group="db", on_maintenance="defer"),
        _spec("elsewhere", group="web"),
    )
    try:
        clock = FakeClock(T0 - timedelta(seconds=30))
        told: list[str] = []
        scheduler = Scheduler(
            store,
            clock,
            on_runs_created=lambda: told.append("created"),
            on_runs_skipped=lambda: told.append("skipped"),
        )
        maintenance = MaintenanceService(store, clock, on_change=lambda: None)
        await maintenance.start("db", "upgrading the DB", "alice")
        for minute in range(3):  # 12:00, 12:01, 12:02 happen in maintenance
            clock.current = T0 + timedelta(minutes=minute)
            await scheduler.run_once()
        # Each pass made runs (web) and skips (db): both told, so alerts look at once.
        assert told == ["created", "skipped"] * 3
        runs = await store.list_runs(limit=100)
        by_job: dict[str, list[tuple[RunState, str | None]]] = {}
        for run in sorted(runs, key=lambda r: r.scheduled_for):
            by_job.setdefault(run.job, []).append((run.state, run.reason))
        assert by_job["db/skipper"] == [(RunState.SKIPPED, "maintenance: upgrading the DB")] * 3
        assert all(s is RunState.SKIPPED for s, _ in by_job["db/deferrer"])
        assert len(by_job["db/deferrer"]) == 3
        assert {s for s, _ in by_job["web/elsewhere"]} == {RunState.SCHEDULED}

        clock.current = T0 + timedelta(minutes=2, seconds=30)
        ended = await maintenance.end("db")
        assert ended is not None and ended.window.note == "upgrading the DB"
        # One run for the three skipped occurrences, of the defer job only, due now.
        assert [(run.job, run.state) for run in ended.runs] == [("db/deferrer", RunState.SCHEDULED)]
        assert ended.runs[0].reason == "maintenance ended: one run for 3 skipped occurrences"
        assert ended.runs[0].not_before == clock.current
        assert await maintenance.end("db") is None  # ended once
        # After it, the occurrences run again.
        clock.current = T0 + timedelta(minutes=3)
        await scheduler.run_once()
        latest = await store.list_runs(limit=3)
        assert {r.state for r in latest if r.scheduled_for == clock.current} == {RunState.SCHEDULED}
    finally:
        await store.close()


async def test_global_maintenance_skips_due_runs_at_claim_and_keeps_groups_own(
    store_url: str,
) -> None:
    store = await _with_jobs(store_url, _spec("job", group="g"))
    try:
        clock = FakeClock(T0 - timedelta(seconds=1))
        await Scheduler(store, clock, on_runs_created=lambda: None).run_once()
        [prepared] = await store.list_runs(limit=10)  # made before the maintenance began
        maintenance = MaintenanceService(store, clock, on_change=lambda: None)
        await maintenance.start("*", None, "root")
        await maintenance.start("g", "own window", "bob")
        clock.current = T0
        runs = RunService(store, clock)
        assignment = await runs.claim(WorkerIdentity("w1", "host1"), None)
        assert assignment.orders == []
        skipped = await store.get_run(prepared.id)
        assert skipped is not None and skipped.state is RunState.SKIPPED
        assert skipped.reason == "maintenance: own window"  # the group's window first
        # Ending everything leaves the group's own window in force.
        await maintenance.end("*")
        assert [w.scope for w in await maintenance.windows()] == ["g"]
    finally:
        await store.close()


async def test_a_pause_with_a_resume_time_ends_by_itself(store_url: str) -> None:
    store = await _with_jobs(store_url, _spec("job"))
    try:
        clock = FakeClock(T0)
        [job] = await store.list_jobs()
        until = T0 + timedelta(minutes=5)
        paused = await store.set_paused(job.id, True, "deploy", T0, resume_at=until)
        assert paused is not None and paused.resume_at == until
        scheduler = Scheduler(store, clock, on_runs_created=lambda: None)
        clock.current = T0 + timedelta(minutes=4)
        delay = await scheduler.run_once()
        assert 0 < delay <= 60  # wakes for the resume time (idle recheck is 30 s)
        [still] = await store.list_jobs()
        assert still.paused
        clock.current = until
        await scheduler.run_once()
        [resumed] = await store.list_jobs()
        assert not resumed.paused and resumed.resume_at is None and resumed.pause_note is None
        audit = await store.list_audit(action="job.resume")
        assert [(r.entry.actor, r.entry.target) for r in audit] == [("belfry", "default/job")]
        # Resuming by hand clears the resume time too.
        await store.set_paused(job.id, True, None, until, resume_at=until + timedelta(hours=1))
        manual = await store.set_paused(job.id, False, None, until)
        assert manual is not None and manual.resume_at is None
    finally:
        await store.close()
