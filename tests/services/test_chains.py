"""Job chains on real stores: the leader's chain pass, and what apply refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from belfry.adapters.store import SqlStore, open_store
from belfry.core.chains import ChainCycle
from belfry.core.jobs import JobKey, JobSpec
from belfry.core.records import JobRecord, RunRecord, Trigger
from belfry.core.states import RunState
from belfry.services.chain_checks import ChainBroken
from belfry.services.chains import ChainService
from belfry.services.jobs import JobService
from tests.services.fake_clock import FakeClock
from tests.services.made_runs import ran

T0 = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


def _job(name: str, **extra: Any) -> JobSpec:
    data: dict[str, Any] = {"name": name, "group": "etl", "command": "true", **extra}
    if "after" not in extra and "after_any" not in extra:
        data["schedule"] = "0 * * * *"
    return JobSpec.model_validate(data)


@dataclass
class Rig:
    store: SqlStore
    clock: FakeClock
    jobs: JobService
    chains: ChainService
    woken: list[int]

    async def job(self, name: str) -> JobRecord:
        return await self.jobs.get(JobKey(group="etl", name=name))

    async def ended(
        self, name: str, state: RunState, *, minute: int, attempt: int = 1, took: int = 60
    ) -> RunRecord:
        """A run of ``name`` for T0 + ``minute`` that ended ``state`` ``took`` s later."""
        job = await self.job(name)
        at = T0 + timedelta(minutes=minute)
        return await ran(
            self.store, job.id, at, state, attempt=attempt, took=timedelta(seconds=took)
        )

    async def chain_pass(self, minute: float) -> list[RunRecord]:
        self.clock.current = T0 + timedelta(minutes=minute)
        return await self.chains.evaluate()

    async def chained(self, name: str) -> list[RunRecord]:
        job = await self.job(name)
        runs = await self.store.list_runs(job_id=job.id, limit=100)
        return sorted((r for r in runs if r.trigger is Trigger.AFTER), key=lambda r: r.id)


@pytest.fixture
async def rig(store_url: str) -> AsyncIterator[Rig]:
    store = await open_store(store_url)
    clock = FakeClock(T0 - timedelta(minutes=1))
    woken: list[int] = []
    chains = ChainService(store, clock, on_runs_created=lambda: woken.append(1))
    try:
        yield Rig(store, clock, JobService(store, clock, on_change=lambda: None), chains, woken)
    finally:
        await store.close()


async def test_a_job_runs_once_after_each_success_of_the_one_it_follows(rig: Rig) -> None:
    await rig.jobs.apply([_job("extract"), _job("load", after=["extract"])])
    load = await rig.job("load")
    assert load.next_fire_at is None, "no schedule of its own"
    upstream = await rig.ended("extract", RunState.SUCCEEDED, minute=0)
    [run] = await rig.chain_pass(1.5)
    assert (run.job, run.state, run.trigger) == ("etl/load", RunState.SCHEDULED, Trigger.AFTER)
    assert run.reason == f"after etl/extract succeeded (run {upstream.id})"
    assert run.scheduled_for == upstream.scheduled_for and rig.woken == [1]
    assert run.not_before == upstream.finished_at, "due at once"
    # Passes that read the same ending again (the overlap behind the mark) add nothing.
    assert await rig.chain_pass(1.6) == [] and await rig.chain_pass(1.7) == []
    assert len(await rig.chained("load")) == 1
    # A failure of extract starts nothing; the next success does.
    await rig.ended("extract", RunState.FAILED, minute=60)
    assert await rig.chain_pass(61.5) == []
    await rig.ended("extract", RunState.SUCCEEDED, minute=120)
    assert len(await rig.chain_pass(121.5)) == 1


async def test_on_failure_waits_for_the_last_attempt(rig: Rig) -> None:
    await rig.jobs.apply(
        [
            _job("extract", retries={"max": 1}),
            _job("cleanup", after={"jobs": ["extract"], "on": "failure"}),
        ]
    )
    first = await rig.ended("extract", RunState.FAILED, minute=0)
    await rig.ended("extract", RunState.FAILED, minute=0, attempt=2, took=120)
    made = await rig.chain_pass(3)
    assert [r.reason for r in made] == [f"after etl/extract failed (run {first.id + 1})"], (
        "the first attempt had a retry: only the last one counts"
    )
    await rig.ended("extract", RunState.SUCCEEDED, minute=60)
    assert await rig.chain_pass(61.5) == []


async def test_a_fan_in_waits_for_each_job_within_its_window_and_uses_each_run_once(
    rig: Rig,
) -> None:
    await rig.jobs.apply(
        [
            _job("orders"),
            _job("payments"),
            _job("report", after={"jobs": ["orders", "payments"], "within": "30m"}),
        ]
    )
    await rig.ended("orders", RunState.SUCCEEDED, minute=0)
    assert await rig.chain_pass(1.5) == [], "payments has not run yet"
    await rig.ended("payments", RunState.SUCCEEDED, minute=10)
    [run] = await rig.chain_pass(11.5)
    assert run.reason is not None and run.reason.startswith("after etl/payments succeeded")
    # orders again: payments' run was used; it waits for a new one.
    await rig.ended("orders", RunState.SUCCEEDED, minute=20)
    assert await rig.chain_pass(21.5) == []
    # payments 40 minutes after that orders run: outside the 30m window.
    await rig.ended("payments", RunState.SUCCEEDED, minute=60)
    assert await rig.chain_pass(61.5) == []
    await rig.ended("orders", RunState.SUCCEEDED, minute=70)
    assert len(await rig.chain_pass(71.5)) == 1
    assert len(await rig.chained("report")) == 2


async def test_after_any_runs_after_each_of_them_and_a_paused_job_records_a_skip(
    rig: Rig,
) -> None:
    await rig.jobs.apply([_job("eu"), _job("us"), _job("publish", after_any=["eu", "us"])])
    await rig.ended("eu", RunState.SUCCEEDED, minute=2)
    await rig.ended("us", RunState.SUCCEEDED, minute=5)
    assert len(await rig.chain_pass(7)) == 2
    await rig.jobs.set_paused(JobKey(group="etl", name="publish"), True, "freeze")
    await rig.ended("eu", RunState.SUCCEEDED, minute=60)
    [skipped] = await rig.chain_pass(61.5)
    assert (skipped.state, skipped.reason) == (RunState.SKIPPED, "paused")
    assert rig.woken == [1], "a skip is no new work"


async def test_apply_refuses_cycles_unknown_jobs_and_deleting_a_followed_job(rig: Rig) -> None:
    await rig.jobs.apply([_job("a"), _job("b", after=["a"])])
    with pytest.raises(
        ChainCycle,
        match=r"wait for each other \(each runs after the next\): etl/a -> etl/b -> etl/a",
    ):
        await rig.jobs.apply([_job("a", after=["b"])])
    with pytest.raises(ChainBroken, match=r"jobs\[etl/c\].after: no job etl/nope"):
        await rig.jobs.apply([_job("c", after=["nope"])])
    with pytest.raises(ChainBroken, match="cannot delete etl/a: etl/b runs after it"):
        await rig.jobs.delete(JobKey(group="etl", name="a"))
    with pytest.raises(ChainBroken, match="cannot delete etl/a"):
        await rig.jobs.apply([_job("b", after=["a"])], prune=True)
    assert {str(job.key) for job in await rig.store.list_jobs()} == {"etl/a", "etl/b"}
    # Taking the chain apart first, then deleting, works; followers are listed.
    assert await rig.jobs.followers(JobKey(group="etl", name="a")) == ["etl/b"]
    await rig.jobs.apply([_job("b")])
    await rig.jobs.delete(JobKey(group="etl", name="a"))
    # Upstream jobs of other groups, and applied in the same call, are fine.
    await rig.jobs.apply(
        [
            _job("x").model_copy(update={"group": "ops"}),
            _job("y", after=["ops/x"]),
        ]
    )
