"""The worker service (hello, claim, heartbeat, report, the reaper) against real stores,
with a fake clock and no HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from belfry.adapters.store import SqlStore, open_store
from belfry.core.jobs import JobSpec
from belfry.core.protocol import (
    PROTOCOL_VERSION,
    ChunkReport,
    FinishedReport,
    Hello,
    Reports,
    StartedReport,
    WorkerCapacity,
)
from belfry.core.records import JobRecord, JobWrite, NewRun, RunRecord, Trigger
from belfry.core.states import Actor, RunState
from belfry.services.runs import FreeCapacity, RunService, WorkerIdentity
from belfry.services.signals import Topic
from belfry.services.workers import ProtocolMismatch, UnknownWorker, WorkerGone, WorkerService
from tests.services.fake_clock import FakeClock

T0 = datetime(2027, 3, 1, 12, 0, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
LOST_REASON = "worker w1 stopped heartbeating for 15s"
S = RunState


def _early(n: int) -> datetime:
    """Due before T0, in order of ``n``."""
    return T0 - SECOND + n * timedelta(microseconds=1)


@dataclass
class Cluster:
    store: SqlStore
    clock: FakeClock
    runs: RunService
    workers: WorkerService

    def at(self, seconds: float) -> None:
        self.clock.current = T0 + timedelta(seconds=seconds)

    async def add_job(self, name: str, **fields: Any) -> JobRecord:
        spec = JobSpec.model_validate(
            {"name": name, "schedule": "@yearly", "command": "true", **fields}
        )
        await self.store.apply_jobs([JobWrite(spec, None)], [], self.clock.now())
        job = await self.store.get_job("default", name)
        assert job is not None
        return job

    async def due_run(self, job: JobRecord, at: datetime = T0) -> RunRecord:
        [run] = await self.store.create_runs([NewRun(job.id, at)], Actor.SCHEDULER, at)
        return run

    async def run(self, run_id: int) -> RunRecord:
        run = await self.store.get_run(run_id)
        assert run is not None
        return run

    async def hello(
        self,
        name: str = "w1",
        pools: tuple[str, ...] = ("default",),
        running: tuple[int, ...] = (),
        allowed: list[str] | None = None,
        **fields: Any,
    ) -> list[int]:
        result = await self.workers.hello(_hello(name, pools, running, **fields), allowed)
        return result.kills

    async def claim(self, name: str = "w1", free: FreeCapacity | None = None) -> list[int]:
        assignment = await self.workers.claim(name, free or FreeCapacity(), 0)
        return [order.run_id for order in assignment.orders]


def _hello(name: str, pools: tuple[str, ...], running: tuple[int, ...], **fields: Any) -> Hello:
    values: dict[str, Any] = {
        "name": name,
        "host": f"{name}.example",
        "pools": list(pools),
        "version": "test",
        "protocol": PROTOCOL_VERSION,
        "running": list(running),
    }
    return Hello.model_validate(values | fields)


def _service(store: SqlStore, clock: FakeClock) -> tuple[RunService, WorkerService]:
    runs = RunService(store, clock, claim_lead=timedelta(0), spread=lambda: 0.0)
    return runs, WorkerService(store, clock, runs, version="test")


@pytest.fixture
async def cluster(store_url: str) -> AsyncIterator[Cluster]:
    store = await open_store(store_url)
    clock = FakeClock(T0)
    try:
        yield Cluster(store, clock, *_service(store, clock))
    finally:
        await store.close()


# -- hello --------------------------------------------------------------------------------
async def test_hello_refuses_another_protocol_version(cluster: Cluster) -> None:
    with pytest.raises(ProtocolMismatch) as refused:
        await cluster.hello(protocol=PROTOCOL_VERSION + 1, version="9.9")
    message = str(refused.value)
    assert f"speaks worker protocol {PROTOCOL_VERSION}," in message
    assert f"speaks {PROTOCOL_VERSION + 1}:" in message
    assert "belfry 9.9" in message
    assert await cluster.store.list_workers() == []


async def test_hello_refuses_pools_outside_the_token(cluster: Cluster) -> None:
    with pytest.raises(PermissionError, match=r"pool\(s\) b, c \(it is for: a\)"):
        await cluster.hello(pools=("a", "b", "c"), allowed=["a"])
    assert await cluster.store.list_workers() == []
    await cluster.hello(pools=("a",), allowed=["a", "b"])
    await cluster.hello("w2", pools=("x", "y"), allowed=None)  # an admin token: any pool
    workers = await cluster.store.list_workers()
    assert [(w.name, w.pools, w.state) for w in workers] == [
        ("w1", ["a"], "active"),
        ("w2", ["x", "y"], "active"),
    ]


async def test_calls_before_hello_are_refused(cluster: Cluster) -> None:
    with pytest.raises(UnknownWorker):
        await cluster.claim("nobody")
    with pytest.raises(UnknownWorker):
        await cluster.workers.heartbeat("nobody", [], False)
    with pytest.raises(UnknownWorker):
        await cluster.workers.report("nobody", Reports())


# -- placement ----------------------------------------------------------------------------
async def test_a_worker_gets_only_runs_of_its_pools(cluster: Cluster) -> None:
    run_a = await cluster.due_run(await cluster.add_job("in-a", pool="a"))
    run_b = await cluster.due_run(await cluster.add_job("in-b", pool="b"))
    run_default = await cluster.due_run(await cluster.add_job("in-default"))
    await cluster.hello(pools=("a",))
    assert await cluster.claim() == [run_a.id]
    assert await cluster.claim() == []
    assert (await cluster.run(run_b.id)).state is S.SCHEDULED
    assert (await cluster.run(run_default.id)).state is S.SCHEDULED
    await cluster.hello("w2", pools=("b", "default"))
    assert sorted(await cluster.claim("w2")) == sorted([run_b.id, run_default.id])
    claimed = await cluster.run(run_b.id)
    assert (claimed.state, claimed.worker) == (S.CLAIMED, "w2")


async def test_a_worker_must_carry_every_tag_of_the_job(cluster: Cluster) -> None:
    tagged = await cluster.due_run(
        await cluster.add_job("tagged", tags={"region": "eu", "disk": "ssd"})
    )
    await cluster.hello("half", tags={"region": "eu"})
    await cluster.hello("wrong", tags={"region": "us", "disk": "ssd"})
    await cluster.hello("none")
    await cluster.hello("all", tags={"region": "eu", "disk": "ssd", "gpu": "no"})
    for name in ("half", "wrong", "none"):
        assert await cluster.claim(name) == [], name
    assert await cluster.claim("all") == [tagged.id]


async def test_untagged_jobs_run_on_tagged_workers(cluster: Cluster) -> None:
    plain = await cluster.due_run(await cluster.add_job("plain"))
    await cluster.hello(tags={"region": "eu"})
    assert await cluster.claim() == [plain.id]


async def test_claims_respect_free_slots(cluster: Cluster) -> None:
    job = await cluster.add_job("many")
    runs = [await cluster.due_run(job, _early(n)) for n in range(3)]
    await cluster.hello(capacity=WorkerCapacity(slots=2))
    assert await cluster.claim(free=FreeCapacity(slots=0)) == []
    assert await cluster.claim(free=FreeCapacity(slots=2)) == [runs[0].id, runs[1].id]
    assert await cluster.claim(free=FreeCapacity(slots=1)) == [runs[2].id]


async def test_claims_respect_free_cpu_and_memory(cluster: Cluster) -> None:
    big = await cluster.due_run(await cluster.add_job("big", resources={"cpu": 2, "memory": "1Gi"}))
    halves = await cluster.add_job("half-cpu", resources={"cpu": 0.5})
    half_runs = [await cluster.due_run(halves, _early(n)) for n in range(3)]
    mem = await cluster.due_run(await cluster.add_job("mem", resources={"memory": "300Mi"}))
    await cluster.hello(capacity=WorkerCapacity(cpu=4, memory_mb=2048))

    # 1 cpu: two halves fit, the big one and the third half do not; no memory limit given
    # means the memory-only job fits.
    first = await cluster.claim(free=FreeCapacity(cpu=1.0))
    assert sorted(first) == sorted([half_runs[0].id, half_runs[1].id, mem.id])
    # Plenty of cpu, too little memory for the big one.
    assert await cluster.claim(free=FreeCapacity(cpu=8.0, memory_mb=512)) == [half_runs[2].id]
    assert (await cluster.run(big.id)).state is S.SCHEDULED
    assert await cluster.claim(free=FreeCapacity(cpu=2.0, memory_mb=1024)) == [big.id]


async def test_memory_is_counted_across_one_claim(cluster: Cluster) -> None:
    job = await cluster.add_job("mem", resources={"memory": "300Mi"})
    runs = [await cluster.due_run(job, _early(n)) for n in range(3)]
    await cluster.hello()
    assert await cluster.claim(free=FreeCapacity(memory_mb=700)) == [runs[0].id, runs[1].id]


# -- the reaper ---------------------------------------------------------------------------
async def test_a_worker_silent_for_more_than_15_seconds_is_lost(cluster: Cluster) -> None:
    await cluster.hello()
    await cluster.hello("w2")
    cluster.at(10)
    await cluster.workers.heartbeat("w2", [], False)
    cluster.at(14)
    assert await cluster.workers.reap() == []
    cluster.at(15)
    assert await cluster.workers.reap() == []
    cluster.at(15.5)
    assert await cluster.workers.reap() == ["w1"]
    assert await cluster.workers.reap() == []
    states = {w.name: w.state for w in await cluster.store.list_workers()}
    assert states == {"w1": "lost", "w2": "active"}


async def test_a_lost_workers_runs_are_lost_and_retried_only_when_the_job_says_so(
    cluster: Cluster,
) -> None:
    failing = await cluster.add_job("failing")  # on_worker_lost: fail (the default)
    retried = await cluster.add_job("retried", on_worker_lost="retry")  # retries.max 0
    failing_run = await cluster.due_run(failing, _early(0))
    retried_run = await cluster.due_run(retried, _early(1))
    await cluster.hello()
    assert await cluster.claim() == [failing_run.id, retried_run.id]
    await cluster.workers.report(
        "w1", Reports(started=[StartedReport(run_id=retried_run.id, pid=7, host="h")])
    )
    assert (await cluster.run(retried_run.id)).state is S.RUNNING

    cluster.at(16)
    assert await cluster.workers.reap() == ["w1"]
    for run_id in (failing_run.id, retried_run.id):
        run = await cluster.run(run_id)
        assert (run.state, run.reason, run.worker) == (S.LOST, LOST_REASON, "w1")
        [*_, event] = await cluster.store.run_events(run_id)
        assert (event.state, event.actor, event.reason) == (S.LOST, Actor.REAPER, LOST_REASON)

    retry_runs = await cluster.store.list_runs(job_id=retried.id)
    [retry] = [run for run in retry_runs if run.id != retried_run.id]
    assert (retry.attempt, retry.trigger, retry.state) == (2, Trigger.RETRY, S.SCHEDULED)
    assert retry.scheduled_for == retried_run.scheduled_for
    assert [run.id for run in await cluster.store.list_runs(job_id=failing.id)] == [failing_run.id]


async def test_a_lost_retry_is_not_retried_again_beyond_one_attempt(cluster: Cluster) -> None:
    job = await cluster.add_job("retried", on_worker_lost="retry")
    await cluster.store.create_runs(
        [NewRun(job.id, T0, attempt=2, trigger=Trigger.RETRY)], Actor.SCHEDULER, T0
    )
    await cluster.hello()
    [claimed] = await cluster.claim()
    cluster.at(16)
    assert await cluster.workers.reap() == ["w1"]
    assert (await cluster.run(claimed)).state is S.LOST
    assert len(await cluster.store.list_runs(job_id=job.id)) == 1


async def test_lost_runs_follow_the_jobs_retry_budget(cluster: Cluster) -> None:
    job = await cluster.add_job(
        "budget", on_worker_lost="retry", retries={"max": 3, "backoff": "30s"}
    )
    first = await cluster.due_run(job)
    await cluster.hello()
    assert await cluster.claim() == [first.id]
    cluster.at(16)
    await cluster.workers.reap()
    [retry] = [run for run in await cluster.store.list_runs(job_id=job.id) if run.id != first.id]
    assert (retry.attempt, retry.scheduled_for) == (2, T0)
    assert retry.not_before == T0 + 16 * SECOND + 30 * SECOND


async def test_a_lost_worker_must_say_hello_again(cluster: Cluster) -> None:
    await cluster.hello()
    cluster.at(16)
    assert await cluster.workers.reap() == ["w1"]
    with pytest.raises(WorkerGone):
        await cluster.workers.heartbeat("w1", [], False)
    with pytest.raises(WorkerGone):
        await cluster.claim()
    with pytest.raises(WorkerGone):
        await cluster.workers.report("w1", Reports())
    await cluster.hello()
    assert await cluster.workers.heartbeat("w1", [], False) == []
    assert [w.state for w in await cluster.store.list_workers()] == ["active"]


async def test_a_worker_lost_by_another_replica_is_gone_here_too(cluster: Cluster) -> None:
    """Two servers share the database: the reaper of one declares the worker lost while
    the other still has it in mind from its last call."""
    job = await cluster.add_job("job")
    await cluster.hello()
    assert await cluster.claim() == []
    _, other = _service(cluster.store, cluster.clock)
    cluster.at(16)
    assert await other.reap() == ["w1"]
    await cluster.due_run(job, T0 + 16 * SECOND)
    with pytest.raises(WorkerGone):
        await cluster.claim()
    with pytest.raises(WorkerGone):
        await cluster.workers.report("w1", Reports())
    with pytest.raises(WorkerGone):
        await cluster.workers.heartbeat("w1", [], False)


async def _claim_across_a_change(
    cluster: Cluster, change: Callable[[], Awaitable[None]]
) -> list[int]:
    """A long-poll claim that finds nothing, then ``change``, then new work arrives."""
    job = await cluster.add_job("job")
    waiting = asyncio.Event()
    wait_for_work = cluster.runs.wait_for_work

    async def spied(timeout: float) -> None:
        waiting.set()
        await wait_for_work(timeout)

    cluster.runs.wait_for_work = spied  # type: ignore[method-assign]
    poll = asyncio.create_task(cluster.workers.claim("w1", FreeCapacity(), 30.0))
    await waiting.wait()
    await change()
    await cluster.due_run(job, cluster.clock.now())
    cluster.runs.new_work.ring()
    assignment = await poll
    return [order.run_id for order in assignment.orders]


async def test_a_long_poll_outliving_its_worker_gets_no_work(cluster: Cluster) -> None:
    """The worker died with a claim in flight (the server does not notice a dropped
    connection); it is declared lost before the claim's wait ends."""
    await cluster.hello()

    async def declared_lost() -> None:
        cluster.at(16)
        assert await cluster.workers.reap() == ["w1"]

    with pytest.raises(WorkerGone):
        await _claim_across_a_change(cluster, declared_lost)
    [run] = await cluster.store.list_runs()
    assert (run.state, run.worker) == (S.SCHEDULED, None)


async def test_a_long_poll_of_a_worker_that_starts_draining_gets_no_work(
    cluster: Cluster,
) -> None:
    await cluster.hello()

    async def drains() -> None:
        await cluster.workers.heartbeat("w1", [], True)

    assert await _claim_across_a_change(cluster, drains) == []
    [run] = await cluster.store.list_runs()
    assert run.state is S.SCHEDULED


async def test_a_run_handed_to_a_worker_already_lost_is_marked_lost(cluster: Cluster) -> None:
    """A claim that raced the reaper (checked the worker just before it was declared,
    took the run just after its runs were marked) leaves no run claimed for ever."""
    run = await cluster.due_run(await cluster.add_job("job"))
    await cluster.hello()
    cluster.at(16)
    assert await cluster.workers.reap() == ["w1"]
    # The claim as the racing server made it.
    racing = await cluster.runs.claim(WorkerIdentity("w1", "w1.example"), None)
    assert [order.run_id for order in racing.orders] == [run.id]
    cluster.at(17)
    assert await cluster.workers.reap() == []
    lost = await cluster.run(run.id)
    assert (lost.state, lost.reason) == (S.LOST, "worker w1 was declared lost")
    # A worker that is back (active again) keeps what it holds.
    await cluster.hello()
    other = await cluster.due_run(await cluster.add_job("other"), T0 + 17 * SECOND)
    assert await cluster.claim() == [other.id]
    await cluster.workers.reap()
    assert (await cluster.run(other.id)).state is S.CLAIMED


async def test_hello_again_listing_a_lost_run_is_told_to_kill_it(cluster: Cluster) -> None:
    run = await cluster.due_run(await cluster.add_job("job"))
    await cluster.hello()
    assert await cluster.claim() == [run.id]
    cluster.at(16)
    await cluster.workers.reap()
    assert await cluster.hello(running=(run.id,)) == [run.id]
    assert (await cluster.run(run.id)).state is S.LOST


async def test_a_restarted_worker_loses_the_runs_it_does_not_list(cluster: Cluster) -> None:
    job = await cluster.add_job("job", on_worker_lost="retry")
    kept = await cluster.due_run(job)
    dropped = await cluster.due_run(job, T0 + SECOND)
    await cluster.hello()
    cluster.at(1)
    assert await cluster.claim() == [kept.id, dropped.id]
    cluster.at(2)
    assert await cluster.hello(running=(kept.id,)) == []
    assert (await cluster.run(kept.id)).state is S.CLAIMED
    lost = await cluster.run(dropped.id)
    assert (lost.state, lost.reason) == (S.LOST, "the worker restarted without this run")
    retries = [r for r in await cluster.store.list_runs(job_id=job.id) if r.attempt == 2]
    assert [r.scheduled_for for r in retries] == [dropped.scheduled_for]
    # A restart listing nothing loses everything it held.
    assert await cluster.hello() == []
    assert (await cluster.run(kept.id)).state is S.LOST


async def test_heartbeat_returns_runs_the_worker_no_longer_holds(cluster: Cluster) -> None:
    job = await cluster.add_job("job")
    mine = await cluster.due_run(job)
    ended = await cluster.due_run(job, T0 + SECOND)
    await cluster.hello()
    cluster.at(1)
    assert await cluster.claim() == [mine.id, ended.id]
    await cluster.workers.report(
        "w1", Reports(finished=[FinishedReport(run_id=ended.id, state="succeeded", exit_code=0)])
    )
    # Listing its own run, one that ended and one it never had.
    kills = await cluster.workers.heartbeat("w1", [mine.id, ended.id, 424242], False)
    assert kills == [ended.id, 424242]
    # A kill request reaches the worker, through this server or another replica.
    await cluster.runs.kill(mine.id)
    assert await cluster.workers.heartbeat("w1", [mine.id], False) == [mine.id]
    _, other = _service(cluster.store, cluster.clock)
    assert await other.heartbeat("w1", [mine.id], False) == [mine.id]
    await cluster.workers.report(
        "w1", Reports(finished=[FinishedReport(run_id=mine.id, state="killed")])
    )
    assert await cluster.workers.heartbeat("w1", [], False) == []
    assert (await cluster.run(mine.id)).state is S.KILLED


async def test_a_draining_worker_gets_no_new_runs(cluster: Cluster) -> None:
    run = await cluster.due_run(await cluster.add_job("job"))
    await cluster.hello()
    assert await cluster.workers.heartbeat("w1", [], True) == []
    assert [w.state for w in await cluster.store.list_workers()] == ["draining"]
    assert await cluster.claim() == []
    assert (await cluster.run(run.id)).state is S.SCHEDULED
    await cluster.workers.heartbeat("w1", [], False)
    assert await cluster.claim() == [run.id]


async def test_a_worker_draining_on_another_replica_gets_no_new_runs(cluster: Cluster) -> None:
    run = await cluster.due_run(await cluster.add_job("job"))
    await cluster.hello()
    _, other = _service(cluster.store, cluster.clock)
    assert await other.heartbeat("w1", [], True) == []
    assert await cluster.claim() == []
    assert (await cluster.run(run.id)).state is S.SCHEDULED


# -- reports ------------------------------------------------------------------------------
async def test_reports_are_applied_once(cluster: Cluster) -> None:
    run = await cluster.due_run(await cluster.add_job("job"))
    await cluster.hello()
    assert await cluster.claim() == [run.id]
    reports = Reports(
        started=[StartedReport(run_id=run.id, pid=4242, host="w1.example")],
        output=[
            ChunkReport(run_id=run.id, seq=0, stream="stdout", data="hello\n", at=T0),
            ChunkReport(run_id=run.id, seq=1, stream="stderr", data="oops\n", at=T0),
        ],
        finished=[FinishedReport(run_id=run.id, state="succeeded", exit_code=0)],
    )
    for _ in range(3):
        await cluster.workers.report("w1", reports)
    done = await cluster.run(run.id)
    assert (done.state, done.exit_code, done.pid, done.host) == (
        S.SUCCEEDED,
        0,
        4242,
        "w1.example",
    )
    assert [(c.seq, c.data) for c in await cluster.store.read_output(run.id)] == [
        (0, "hello\n"),
        (1, "oops\n"),
    ]
    events = await cluster.store.run_events(run.id)
    assert [e.state for e in events] == [S.SCHEDULED, S.CLAIMED, S.RUNNING, S.SUCCEEDED]


# -- why runs wait ------------------------------------------------------------------------
async def test_a_run_no_live_worker_can_take_says_why_it_waits(cluster: Cluster) -> None:
    run = await cluster.due_run(await cluster.add_job("job", pool="p1"))
    await cluster.hello(pools=("default",))
    cluster.at(4)
    await cluster.workers.heartbeat("w1", [], False)
    await cluster.workers.reap()
    assert (await cluster.run(run.id)).reason is None
    cluster.at(6)
    await cluster.workers.reap()
    waiting = await cluster.run(run.id)
    assert (waiting.state, waiting.reason) == (S.SCHEDULED, "waiting: no live worker in pool p1")

    await cluster.hello("p1-worker", pools=("p1",))
    assert await cluster.claim("p1-worker") == [run.id]
    claimed = await cluster.run(run.id)
    assert (claimed.state, claimed.reason, claimed.worker) == (S.CLAIMED, None, "p1-worker")
    [*_, event] = await cluster.store.run_events(run.id)
    assert (event.state, event.reason) == (S.CLAIMED, None)


async def test_a_lost_worker_does_not_count_as_live(cluster: Cluster) -> None:
    run = await cluster.due_run(await cluster.add_job("job", pool="p1", tags={"region": "eu"}))
    await cluster.hello(pools=("p1",), tags={"region": "eu"})
    await cluster.hello("other", pools=("p1",), tags={"region": "us"})
    cluster.at(6)
    await cluster.workers.heartbeat("other", [], False)
    await cluster.workers.reap()
    # w1 could take it and is still live (silent only 6 s): it will.
    assert (await cluster.run(run.id)).reason is None
    cluster.at(16)
    await cluster.workers.heartbeat("other", [], False)
    assert await cluster.workers.reap() == ["w1"]
    assert (await cluster.run(run.id)).reason == "waiting: no live worker in pool p1, tag region=eu"


async def test_a_run_whose_workers_all_drain_says_so(cluster: Cluster) -> None:
    run = await cluster.due_run(await cluster.add_job("job"))
    await cluster.hello()
    await cluster.workers.heartbeat("w1", [], True)
    cluster.at(6)
    await cluster.workers.heartbeat("w1", [], True)
    await cluster.workers.reap()
    assert (await cluster.run(run.id)).reason == "waiting: every worker of pool default is draining"
    await cluster.workers.heartbeat("w1", [], False)
    assert await cluster.claim() == [run.id]
    assert (await cluster.run(run.id)).reason is None


async def test_a_run_handed_back_unstarted_goes_to_another_worker(cluster: Cluster) -> None:
    job = await cluster.add_job("job")
    run = await cluster.due_run(job)
    await cluster.hello("w1")
    await cluster.hello("w2")
    assert await cluster.claim("w1") == [run.id]
    assert await cluster.claim("w2") == []
    # w1 stops before the run's instant and hands it back: scheduled again, nobody's.
    assert await cluster.runs.hand_back("w1", [run.id]) == 1
    back = await cluster.run(run.id)
    assert (back.state, back.worker) == (S.SCHEDULED, None)
    assert back.reason is not None and "handed back unstarted by worker w1" in back.reason
    assert await cluster.claim("w2") == [run.id]
    taken = await cluster.run(run.id)
    assert (taken.state, taken.worker, taken.reason) == (S.CLAIMED, "w2", None)
    # Only its holder can hand a claimed run back; a started run cannot be handed back.
    assert await cluster.runs.hand_back("w1", [run.id]) == 0
    assert (await cluster.run(run.id)).worker == "w2"
    await cluster.workers.report(
        "w2", Reports(started=[StartedReport(run_id=run.id, pid=1, host="w2.example")])
    )
    assert await cluster.runs.hand_back("w2", [run.id]) == 0
    assert (await cluster.run(run.id)).state is S.RUNNING


async def test_a_new_reaper_watches_for_the_loss_timeout_before_declaring(
    cluster: Cluster,
) -> None:
    await cluster.hello("w1")
    # The reaper starts (a new leader, or the database back) 20 s after w1's last beat:
    # the heartbeats of that time may have failed to be recorded, so w1 is not lost yet.
    cluster.at(20)
    assert await cluster.workers.reap_pass() == []
    cluster.at(30)
    await cluster.workers.heartbeat("w1", [], draining=False)  # w1 is alive after all
    cluster.at(36)
    assert await cluster.workers.reap_pass() == []
    # Silent for the whole timeout the reaper has watched: lost.
    cluster.at(46)
    assert await cluster.workers.reap_pass() == ["w1"]


async def test_a_worker_token_cannot_act_as_a_worker_of_other_pools(cluster: Cluster) -> None:
    job = await cluster.add_job("secretive", pool="b")
    run = await cluster.due_run(job)
    await cluster.hello("wb", pools=("b",))
    # A token for pool a: no claim, heartbeat or report as wb.
    for call in (
        cluster.workers.claim("wb", FreeCapacity(), 0, allowed=["a"]),
        cluster.workers.heartbeat("wb", [], draining=False, allowed=["a"]),
        cluster.workers.report("wb", Reports(), allowed=["a"]),
    ):
        with pytest.raises(PermissionError, match="may not act as worker 'wb'"):
            await call
    assert (await cluster.run(run.id)).state is S.SCHEDULED
    assert [
        o.run_id for o in (await cluster.workers.claim("wb", FreeCapacity(), 0, ["b"])).orders
    ] == [run.id]


async def test_reports_on_runs_another_worker_holds_are_ignored(cluster: Cluster) -> None:
    job = await cluster.add_job("job")
    run = await cluster.due_run(job)
    await cluster.hello("w1")
    await cluster.hello("w2")
    assert await cluster.claim("w1") == [run.id]
    # w2 (a token of the same pool) cannot start, write output for or end w1's run.
    await cluster.workers.report(
        "w2",
        Reports(
            started=[StartedReport(run_id=run.id, pid=1, host="w2.example")],
            output=[ChunkReport(run_id=run.id, seq=0, stream="stdout", data="forged", at=T0)],
            finished=[FinishedReport(run_id=run.id, state="succeeded", exit_code=0)],
        ),
    )
    assert (await cluster.run(run.id)).state is S.CLAIMED
    assert await cluster.store.read_output(run.id) == []


async def test_runs_that_end_or_are_lost_are_announced_to_the_other_servers(
    cluster: Cluster,
) -> None:
    """The hub's ENDED signal is what wakes the chain and alert passes of the leader,
    wherever the worker reported; RUNS wakes the long polls of every server."""
    heard: list[Topic] = []
    for topic in Topic:
        cluster.runs.signals.on(topic, lambda topic=topic: heard.append(topic))
    finished, lost = await cluster.add_job("finished"), await cluster.add_job("lost")
    finished_run = await cluster.due_run(finished, _early(0))
    lost_run = await cluster.due_run(lost, _early(1))
    await cluster.hello()
    assert await cluster.claim() == [finished_run.id, lost_run.id]
    assert heard == []  # claiming changes nothing another server waits for
    done = FinishedReport(run_id=finished_run.id, state="succeeded", exit_code=0)
    await cluster.workers.report("w1", Reports(finished=[done]))
    assert heard == [Topic.ENDED]
    cluster.at(16)
    assert await cluster.workers.reap() == ["w1"]
    assert heard == [Topic.ENDED, Topic.ENDED]
    await cluster.runs.trigger(finished)
    assert heard == [Topic.ENDED, Topic.ENDED, Topic.RUNS]
