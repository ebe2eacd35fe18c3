"""The scheduler and the run service against real stores, with a fake clock."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

from belfry.adapters.store import SqlStore, open_store
from belfry.core.jobs import JobSpec
from belfry.core.records import JobWrite
from belfry.core.states import RunState
from belfry.services.runs import RunService, WorkerIdentity
from belfry.services.scheduler import Scheduler
from tests.services.fake_clock import FakeClock

T0 = datetime(2027, 3, 1, 12, 0, 0, tzinfo=UTC)


async def _with_jobs(url: str, *specs: JobSpec, cursor: datetime) -> SqlStore:
    store = await open_store(url)
    await store.apply_jobs([JobWrite(spec, cursor) for spec in specs], [], cursor)
    return store


def _spec(name: str, **extra: object) -> JobSpec:
    return JobSpec.model_validate(
        {"name": name, "schedule": "* * * * * *", "command": "true", **extra}
    )


async def test_racing_schedulers_create_each_run_once(store_url: str) -> None:
    specs = [_spec(f"job-{n}") for n in range(20)]
    first = await _with_jobs(store_url, *specs, cursor=T0)
    second = await open_store(store_url)
    try:
        clock = FakeClock(T0)
        schedulers = [
            Scheduler(store, clock, on_runs_created=lambda: None, batch=7)
            for store in (first, second)
        ]
        for step in range(5):
            clock.current = T0 + timedelta(seconds=step)
            await asyncio.gather(*(s.run_once() for s in schedulers))
        runs = await first.list_runs(limit=1000)
        keys = Counter((run.job_id, run.scheduled_for, run.attempt) for run in runs)
        assert keys and max(keys.values()) == 1, "an occurrence got two runs"
        # Up to now + 1 s horizon: instants T0 .. T0+5s, for every job, none skipped.
        assert len(runs) == 20 * 6
        assert {run.state for run in runs} == {RunState.SCHEDULED}
    finally:
        await first.close()
        await second.close()


async def test_outage_is_caught_up_per_misfire_policy(store_url: str) -> None:
    store = await _with_jobs(
        store_url,
        _spec("once", schedule="*/10 * * * *", misfire="run_once"),
        _spec("skip", schedule="*/10 * * * *", misfire="skip"),
        _spec("bounded", schedule="*/10 * * * *", starting_deadline="25m"),
        cursor=T0,
    )
    try:
        clock = FakeClock(T0 + timedelta(hours=1, seconds=2))  # the scheduler was down 1 h
        await Scheduler(store, clock, on_runs_created=lambda: None).run_once()
        jobs = {job.spec.name: job for job in await store.list_jobs()}
        by_job: dict[str, list[tuple[RunState, str | None]]] = {}
        for run in sorted(await store.list_runs(limit=100), key=lambda r: r.scheduled_for):
            name = run.job.split("/")[1]
            by_job.setdefault(name, []).append((run.state, run.reason))
        # 7 occurrences (12:00 .. 13:00), each handled exactly once.
        assert all(len(v) == 7 for v in by_job.values())
        # run_once: the missed 12:00..12:50 coalesce into one run (12:50); 13:00 is on time.
        assert [s for s, _ in by_job["once"]] == [RunState.SKIPPED] * 5 + [RunState.SCHEDULED] * 2
        assert all((r or "").startswith("misfire: coalesced") for _, r in by_job["once"][:5])
        assert by_job["skip"][-1][0] is RunState.SCHEDULED
        assert all(s is RunState.SKIPPED for s, _ in by_job["skip"][:-1])
        assert all((r or "").startswith("misfire") for _, r in by_job["skip"][:-1])
        deadline = [r for s, r in by_job["bounded"] if s is RunState.SKIPPED]
        assert any((r or "").startswith("deadline passed") for r in deadline)
        assert all(job.next_fire_at == T0 + timedelta(hours=1, minutes=10) for job in jobs.values())
    finally:
        await store.close()


async def test_forbid_skips_at_start_time_and_allow_does_not(store_url: str) -> None:
    store = await _with_jobs(
        store_url, _spec("guarded", overlap="forbid"), _spec("free"), cursor=T0
    )
    try:
        clock = FakeClock(T0)
        runs = RunService(store, clock, claim_lead=timedelta(0))
        scheduler = Scheduler(store, clock, on_runs_created=lambda: None)
        worker = WorkerIdentity("w1", "host1")
        await scheduler.run_once()
        first = await runs.claim(worker, None)
        assert sorted(order.job for order in first.orders) == ["default/free", "default/guarded"]
        for order in first.orders:
            await runs.started(order.run_id, 4242, "host1")
        clock.current = T0 + timedelta(seconds=1)
        await scheduler.run_once()
        second = await runs.claim(worker, None)
        assert [order.job for order in second.orders] == ["default/free"]
        skipped = await store.list_runs(states=[RunState.SKIPPED])
        assert [(run.job, run.reason) for run in skipped] == [
            ("default/guarded", "overlap: previous run still active")
        ]
    finally:
        await store.close()


async def test_a_schedule_change_retires_runs_prepared_from_the_old_one(store_url: str) -> None:
    from belfry.services.jobs import JobService

    store = await open_store(store_url)
    try:
        clock = FakeClock(T0)
        jobs = JobService(store, clock, on_change=lambda: None)
        await jobs.apply([_spec("moving")])
        clock.current = T0 + timedelta(seconds=1)
        await Scheduler(store, clock, on_runs_created=lambda: None).run_once()
        prepared = await store.list_runs(states=[RunState.SCHEDULED])
        assert prepared, "the scheduler prepares runs ahead"
        result = await jobs.apply([_spec("moving", schedule="@hourly")])
        assert result.count("update") == 1
        runs = await store.list_runs()
        assert {run.state for run in runs} == {RunState.SKIPPED}
        assert {run.reason for run in runs} == {"schedule changed before this run started"}
        job = await jobs.get(_spec("moving").key)
        assert job.next_fire_at == T0.replace(hour=13)
        # A change that does not touch timing keeps the prepared runs.
        clock.current = T0.replace(hour=12, minute=59, second=59)
        await Scheduler(store, clock, on_runs_created=lambda: None).run_once()
        await jobs.apply([_spec("moving", schedule="@hourly", description="x")])
        assert await store.list_runs(states=[RunState.SCHEDULED])
    finally:
        await store.close()


async def test_seeded_list_and_bounded_schedules(store_url: str) -> None:
    """Each job gets its own H minute (same schedule text, different names), a list fires
    at the union and ``end`` stops the job."""
    h_jobs = [_spec(f"h-{n}", schedule="H * * * *") for n in range(8)]
    store = await _with_jobs(
        store_url,
        *h_jobs,
        _spec("list", schedule=["0 * * * *", "30 * * * *", "0 13 * * *"]),
        _spec("ends", schedule="*/10 * * * *", end="2027-03-01T12:20:00Z"),
        cursor=T0,
    )
    try:
        clock = FakeClock(T0 + timedelta(hours=2))
        await Scheduler(store, clock, on_runs_created=lambda: None, horizon=timedelta(0)).run_once()
        by_job: dict[str, list[datetime]] = {}
        for run in await store.list_runs(limit=1000):
            by_job.setdefault(run.job.split("/")[1], []).append(run.scheduled_for)
        # The first run is at the stored cursor (T0); the later ones at the job's H minute.
        minutes = {}
        for spec in h_jobs:
            later = sorted(by_job[spec.name])[1:]
            assert later[0] == spec.parsed_schedule().next_after(T0)
            assert {instant.minute for instant in later} == {later[0].minute}
            minutes[spec.name] = later[0].minute
        assert len(set(minutes.values())) > 1
        assert sorted(by_job["list"]) == [
            T0 + timedelta(minutes=minutes) for minutes in (0, 30, 60, 90, 120)
        ]
        assert sorted(by_job["ends"]) == [T0 + timedelta(minutes=m) for m in (0, 10, 20)]
        jobs = {job.spec.name: job for job in await store.list_jobs()}
        assert jobs["ends"].next_fire_at is None
    finally:
        await store.close()


async def test_jitter_delays_start_not_the_occurrence(store_url: str) -> None:
    store = await _with_jobs(
        store_url, _spec("spread", schedule="*/5 * * * * *", jitter="30s"), cursor=T0
    )
    try:
        clock = FakeClock(T0 + timedelta(seconds=3))
        scheduler = Scheduler(store, clock, on_runs_created=lambda: None)
        for step in range(0, 25, 5):
            clock.current = T0 + timedelta(seconds=step + 3)
            await scheduler.run_once()
        runs = await store.list_runs(limit=100)
        # 12:00:00 .. 12:00:20, each once, all on time.
        assert len(runs) == 5 and {run.state for run in runs} == {RunState.SCHEDULED}
        delays = {run.not_before - run.scheduled_for for run in runs}
        # 30 s of jitter, but never past the next occurrence 5 s later.
        assert all(timedelta(0) <= d < timedelta(seconds=5) for d in delays)
        assert len(delays) > 1, "jitter should differ between occurrences"
        assert all(run.scheduled_for.second % 5 == 0 for run in runs)
    finally:
        await store.close()
