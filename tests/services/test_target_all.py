"""``target: all``: one run per live matching worker, each its own record. The scheduler,
the run service and the worker service against real stores, with a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from belfry.adapters.store import SqlStore, open_store
from belfry.core.jobs import JobSpec
from belfry.core.protocol import PROTOCOL_VERSION, FinishedReport, Hello, Reports, StartedReport
from belfry.core.records import JobRecord, JobWrite, RunRecord, Trigger, WorkerRecord
from belfry.core.states import RunState
from belfry.services.runs import FreeCapacity, RunService
from belfry.services.scheduler import Scheduler
from belfry.services.workers import WorkerService
from tests.services.fake_clock import FakeClock

T0 = datetime(2027, 3, 1, 12, 0, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
S = RunState


@dataclass
class Cluster:
    store: SqlStore
    clock: FakeClock
    runs: RunService
    workers: WorkerService
    scheduler: Scheduler

    def at(self, seconds: float) -> None:
        self.clock.current = T0 + timedelta(seconds=seconds)

    async def add_job(self, name: str, **fields: Any) -> JobRecord:
        """An every-second job (by default) whose first occurrence is now."""
        spec = JobSpec.model_validate(
            {"name": name, "schedule": "* * * * * *", "command": "true", **fields}
        )
        await self.store.apply_jobs([JobWrite(spec, self.clock.now())], [], self.clock.now())
        job = await self.store.get_job("default", name)
        assert job is not None
        return job

    async def hello(self, name: str, *pools: str, **fields: Any) -> None:
        values: dict[str, Any] = {
            "name": name,
            "host": f"{name}.example",
            "pools": list(pools or ("default",)),
            "version": "test",
            "protocol": PROTOCOL_VERSION,
        }
        await self.workers.hello(Hello.model_validate(values | fields), None)

    async def beat(self, *names: str, draining: bool = False) -> None:
        for name in names:
            await self.workers.heartbeat(name, [], draining)

    async def claim(self, name: str) -> list[int]:
        assignment = await self.workers.claim(name, FreeCapacity(), 0)
        return [order.run_id for order in assignment.orders]

    async def runs_of(self, job: JobRecord) -> list[RunRecord]:
        return sorted(
            await self.store.list_runs(job_id=job.id, limit=1000),
            key=lambda run: (run.scheduled_for, run.attempt, run.target or ""),
        )

    async def run(self, run_id: int) -> RunRecord:
        run = await self.store.get_run(run_id)
        assert run is not None
        return run

    async def start(self, worker: str, *run_ids: int) -> None:
        started = [StartedReport(run_id=run_id, pid=100 + run_id, host="h") for run_id in run_ids]
        await self.workers.report(worker, Reports(started=started))

    async def succeed(self, worker: str, *run_ids: int) -> None:
        done = [FinishedReport(run_id=i, state="succeeded", exit_code=0) for i in run_ids]
        await self.workers.report(worker, Reports(finished=done))


@pytest.fixture
async def cluster(store_url: str) -> AsyncIterator[Cluster]:
    store = await open_store(store_url)
    clock = FakeClock(T0)
    runs = RunService(store, clock, claim_lead=timedelta(0), spread=lambda: 0.0)
    workers = WorkerService(store, clock, runs, version="test")
    # No horizon: a pass at T0 + n s makes the runs of the occurrences up to T0 + n s.
    scheduler = Scheduler(store, clock, on_runs_created=lambda: None, horizon=timedelta(0))
    try:
        yield Cluster(store, clock, runs, workers, scheduler)
    finally:
        await store.close()


def _by_target(runs: list[RunRecord]) -> dict[str | None, RunRecord]:
    by_target = {run.target: run for run in runs}
    assert len(by_target) == len(runs), "two runs for one target"
    return by_target


# -- the scheduler ------------------------------------------------------------------------
async def test_each_occurrence_runs_once_on_every_live_worker_of_the_pool(
    cluster: Cluster,
) -> None:
    job = await cluster.add_job("everywhere", pool="web", target="all")
    for name in ("w1", "w2", "w3"):
        await cluster.hello(name, "web")
    await cluster.hello("db1", "db")
    await cluster.scheduler.run_once()
    runs = await cluster.runs_of(job)
    assert [(run.scheduled_for, run.target, run.state) for run in runs] == [
        (T0, "w1", S.SCHEDULED),
        (T0, "w2", S.SCHEDULED),
        (T0, "w3", S.SCHEDULED),
    ]
    by_target = _by_target(runs)
    # Each run goes to its own worker only, whoever asks first.
    assert await cluster.claim("db1") == []
    assert await cluster.claim("w3") == [by_target["w3"].id]
    assert await cluster.claim("w3") == []
    assert await cluster.claim("w1") == [by_target["w1"].id]
    assert (await cluster.run(by_target["w2"].id)).state is S.SCHEDULED
    assert await cluster.claim("w2") == [by_target["w2"].id]
    for name in ("w1", "w2", "w3"):
        claimed = await cluster.run(by_target[name].id)
        assert (claimed.state, claimed.worker, claimed.target) == (S.CLAIMED, name, name)

    # The next occurrence: three more runs, one per worker again.
    cluster.at(1)
    await cluster.beat("w1", "w2", "w3", "db1")
    await cluster.scheduler.run_once()
    later = [run for run in await cluster.runs_of(job) if run.scheduled_for == T0 + SECOND]
    assert sorted(run.target or "" for run in later) == ["w1", "w2", "w3"]
    for run in later:
        assert run.target is not None
        assert await cluster.claim(run.target) == [run.id]


async def test_workers_that_are_not_live_or_do_not_match_get_no_run(cluster: Cluster) -> None:
    names = ("active", "draining", "lost", "silent", "elsewhere", "untagged")
    for name in names:
        tags = {"region": "us" if name == "elsewhere" else "eu"} if name != "untagged" else {}
        await cluster.hello(name, tags=tags)
    cluster.at(10)
    await cluster.beat("active", "silent", "elsewhere", "untagged")
    await cluster.beat("draining", draining=True)
    cluster.at(16)
    await cluster.beat("active", "elsewhere", "untagged")
    await cluster.beat("draining", draining=True)
    assert await cluster.workers.reap() == ["lost"]
    early = await cluster.add_job(
        "early", schedule="at 2027-03-01T12:00:16Z", target="all", tags={"region": "eu"}
    )
    await cluster.scheduler.run_once()
    assert [run.target for run in await cluster.runs_of(early)] == ["active", "silent"]

    # "silent" was last heard from 16 s ago: no longer live, though no reaper said so yet.
    cluster.at(26)
    await cluster.beat("active", "elsewhere", "untagged")
    await cluster.beat("draining", draining=True)
    late = await cluster.add_job(
        "late", schedule="at 2027-03-01T12:00:26Z", target="all", tags={"region": "eu"}
    )
    await cluster.scheduler.run_once()
    [run] = await cluster.runs_of(late)
    assert (run.target, run.state) == ("active", S.SCHEDULED)
    workers = {w.name: w.state for w in await cluster.store.list_workers()}
    assert workers["silent"] == "active"


async def test_an_occurrence_without_a_live_worker_is_one_skipped_run(cluster: Cluster) -> None:
    job = await cluster.add_job("everywhere", pool="web", target="all")
    tagged = await cluster.add_job("tagged", pool="web", target="all", tags={"disk": "ssd"})
    await cluster.hello("db1", "db")
    await cluster.hello("w1", "web")
    await cluster.beat("w1", draining=True)
    await cluster.scheduler.run_once()
    [skipped] = await cluster.runs_of(job)
    assert (skipped.state, skipped.target, skipped.reason) == (
        S.SKIPPED,
        None,
        "target all: no live worker in pool web",
    )
    assert skipped.finished_at == T0
    [skipped_tagged] = await cluster.runs_of(tagged)
    assert skipped_tagged.reason == "target all: no live worker in pool web, tag disk=ssd"
    assert await cluster.claim("db1") == []


async def test_skips_stay_one_record_per_occurrence(cluster: Cluster) -> None:
    job = await cluster.add_job("everywhere", target="all", paused=True)
    await cluster.hello("w1")
    await cluster.hello("w2")
    cluster.at(2)
    await cluster.scheduler.run_once()
    runs = await cluster.runs_of(job)
    assert [(run.scheduled_for, run.state, run.target, run.reason) for run in runs] == [
        (T0 + n * SECOND, S.SKIPPED, None, "paused") for n in range(3)
    ]


async def test_target_any_makes_one_untargeted_run(cluster: Cluster) -> None:
    job = await cluster.add_job("anywhere")
    await cluster.hello("w1")
    await cluster.hello("w2")
    await cluster.scheduler.run_once()
    [run] = await cluster.runs_of(job)
    assert run.target is None
    assert await cluster.claim("w2") == [run.id]
    assert await cluster.claim("w1") == []


async def test_the_workers_are_read_once_per_pass_and_only_for_target_all(
    cluster: Cluster,
) -> None:
    await cluster.add_job("anywhere")
    reads = 0
    list_workers = cluster.store.list_workers

    async def counted() -> list[WorkerRecord]:
        nonlocal reads
        reads += 1
        return await list_workers()

    cluster.store.list_workers = counted  # type: ignore[method-assign]
    await cluster.scheduler.run_once()
    assert reads == 0
    await cluster.add_job("everywhere", target="all")
    await cluster.add_job("everywhere-too", target="all")
    cluster.at(1)
    await cluster.scheduler.run_once()
    assert reads == 1


# -- overlap ------------------------------------------------------------------------------
async def test_overlap_forbid_is_judged_per_target(cluster: Cluster) -> None:
    job = await cluster.add_job("guarded", target="all", overlap="forbid")
    await cluster.hello("w1")
    await cluster.hello("w2")
    await cluster.scheduler.run_once()
    first = _by_target(await cluster.runs_of(job))
    for name in ("w1", "w2"):
        assert await cluster.claim(name) == [first[name].id]
        await cluster.start(name, first[name].id)
    await cluster.succeed("w2", first["w2"].id)

    cluster.at(1)
    await cluster.beat("w1", "w2")
    await cluster.scheduler.run_once()
    second = _by_target([r for r in await cluster.runs_of(job) if r.scheduled_for > T0])
    # w1 still runs the first occurrence: its run of the second is skipped; w2's is not.
    assert await cluster.claim("w1") == []
    assert await cluster.claim("w2") == [second["w2"].id]
    skipped = await cluster.run(second["w1"].id)
    assert (skipped.state, skipped.reason) == (S.SKIPPED, "overlap: previous run still active")
    assert (await cluster.run(first["w1"].id)).state is S.RUNNING


async def test_overlap_queue_waits_per_target(cluster: Cluster) -> None:
    job = await cluster.add_job("queued", target="all", overlap="queue")
    await cluster.hello("w1")
    await cluster.hello("w2")
    await cluster.scheduler.run_once()
    first = _by_target(await cluster.runs_of(job))
    assert await cluster.claim("w1") == [first["w1"].id]
    cluster.at(1)
    await cluster.beat("w1", "w2")
    await cluster.scheduler.run_once()
    second = _by_target([r for r in await cluster.runs_of(job) if r.scheduled_for > T0])
    # Each worker's second run queues behind that worker's first, and only behind it.
    assert await cluster.claim("w2") == [first["w2"].id]
    assert await cluster.claim("w1") == []
    assert await cluster.claim("w2") == []
    await cluster.succeed("w1", first["w1"].id)
    assert await cluster.claim("w2") == []
    assert await cluster.claim("w1") == [second["w1"].id]
    assert (await cluster.run(second["w2"].id)).state is S.SCHEDULED
    await cluster.succeed("w2", first["w2"].id)
    assert await cluster.claim("w2") == [second["w2"].id]


# -- manual triggers ----------------------------------------------------------------------
async def test_a_manual_trigger_runs_on_every_live_matching_worker(cluster: Cluster) -> None:
    job = await cluster.add_job("everywhere", pool="web", target="all")
    anywhere = await cluster.add_job("anywhere", pool="web")
    await cluster.hello("w1", "web")
    await cluster.hello("w2", "web")
    await cluster.hello("w3", "web")
    await cluster.beat("w3", draining=True)
    await cluster.hello("db1", "db")
    cluster.at(0.5)
    made = await cluster.runs.trigger(job)
    assert [(r.target, r.trigger, r.state, r.scheduled_for) for r in made] == [
        ("w1", Trigger.MANUAL, S.SCHEDULED, T0 + SECOND / 2),
        ("w2", Trigger.MANUAL, S.SCHEDULED, T0 + SECOND / 2),
    ]
    assert await cluster.claim("w2") == [made[1].id]
    assert await cluster.claim("w1") == [made[0].id]
    [single] = await cluster.runs.trigger(anywhere)
    assert (single.target, single.state) == (None, S.SCHEDULED)


async def test_a_manual_trigger_without_a_live_worker_is_one_skipped_run(
    cluster: Cluster,
) -> None:
    job = await cluster.add_job("everywhere", pool="web", target="all")
    await cluster.hello("db1", "db")
    [skipped] = await cluster.runs.trigger(job)
    assert (skipped.state, skipped.trigger, skipped.target, skipped.reason) == (
        S.SKIPPED,
        Trigger.MANUAL,
        None,
        "target all: no live worker in pool web",
    )


# -- lost workers -------------------------------------------------------------------------
async def test_a_lost_targeted_run_is_retried_for_the_same_worker(cluster: Cluster) -> None:
    job = await cluster.add_job("everywhere", target="all", on_worker_lost="retry")
    await cluster.hello("w1")
    await cluster.hello("w2")
    await cluster.scheduler.run_once()
    first = _by_target(await cluster.runs_of(job))
    for name in ("w1", "w2"):
        assert await cluster.claim(name) == [first[name].id]

    cluster.at(16)
    await cluster.beat("w2")
    assert await cluster.workers.reap() == ["w1"]
    assert (await cluster.run(first["w1"].id)).state is S.LOST
    [retry] = [run for run in await cluster.runs_of(job) if run.attempt == 2]
    assert (retry.target, retry.trigger, retry.scheduled_for) == ("w1", Trigger.RETRY, T0)
    # It waits for w1: w2 does not take it, and the reaper says why it waits.
    cluster.clock.current = retry.not_before + 6 * SECOND
    await cluster.beat("w2")
    assert await cluster.claim("w2") == []
    await cluster.workers.reap()
    waiting = await cluster.run(retry.id)
    assert (waiting.state, waiting.reason) == (S.SCHEDULED, "waiting: worker w1 is not live")

    await cluster.hello("w1")
    assert await cluster.claim("w1") == [retry.id]
    claimed = await cluster.run(retry.id)
    assert (claimed.state, claimed.worker, claimed.reason) == (S.CLAIMED, "w1", None)


async def test_a_targeted_run_of_a_draining_worker_says_so(cluster: Cluster) -> None:
    job = await cluster.add_job("everywhere", target="all")
    await cluster.hello("w1")
    await cluster.hello("w2")
    await cluster.scheduler.run_once()
    runs = _by_target(await cluster.runs_of(job))
    assert await cluster.claim("w2") == [runs["w2"].id]
    cluster.at(6)
    await cluster.beat("w1", draining=True)
    await cluster.beat("w2")
    await cluster.workers.reap()
    assert (await cluster.run(runs["w1"].id)).reason == "waiting: worker w1 is draining"
    assert await cluster.claim("w2") == []
    await cluster.beat("w1")
    assert await cluster.claim("w1") == [runs["w1"].id]
