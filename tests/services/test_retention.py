"""The pruner on real stores: what each pass deletes, found by queries, job by job."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, event

from belfry.adapters.store import SqlStore
from belfry.core.jobs import JobKey, JobSpec
from belfry.core.states import RunState
from belfry.services.jobs import JobService
from belfry.services.retention import Pruner, RetentionDefaults
from tests.services.fake_clock import FakeClock
from tests.services.made_runs import ran

T0 = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


async def _jobs(store: SqlStore, clock: FakeClock, **specs: dict[str, Any]) -> dict[str, int]:
    service = JobService(store, clock, on_change=lambda: None)
    await service.apply(
        [
            JobSpec.model_validate({"name": name, "schedule": "@yearly", "command": "true", **s})
            for name, s in specs.items()
        ]
    )
    return {name: (await service.get(JobKey(group="default", name=name))).id for name in specs}


async def _count(store: SqlStore, job_id: int) -> int:
    return len(await store.list_runs(job_id=job_id, limit=10_000))


async def test_a_pass_keeps_each_jobs_newest_runs_and_drops_the_old(store: SqlStore) -> None:
    clock = FakeClock(T0)
    ids = await _jobs(store, clock, plain={}, keeps_five={"retention": {"keep_runs": 5}})
    for day in range(12):
        for job_id in ids.values():
            await ran(store, job_id, T0 + day * DAY, RunState.SUCCEEDED)
    clock.current = T0 + 12 * DAY
    pruner = Pruner(store, clock, RetentionDefaults(keep_runs=8, keep_days=10), batch=2)
    # keeps_five: its own 5 newest; plain: the default 8, and none older than 10 days
    # (the 8 newest all are younger); in batches of 2.
    assert await pruner.prune_all() == (12 - 5) + (12 - 8)
    assert await _count(store, ids["keeps_five"]) == 5
    assert await _count(store, ids["plain"]) == 8
    assert await pruner.prune_all() == 0
    # Days pass without runs: age alone leaves each job its runs of the last 10 days.
    clock.current = T0 + 20 * DAY
    assert await pruner.prune_all() == 6 + 3
    assert await _count(store, ids["plain"]) == 2
    assert await _count(store, ids["keeps_five"]) == 2


async def test_later_passes_count_only_the_jobs_with_new_runs(store: SqlStore) -> None:
    clock = FakeClock(T0)
    names = [f"job{n}" for n in range(6)]
    ids = await _jobs(store, clock, **{name: {} for name in names})
    for job_id in ids.values():
        for minute in range(3):
            await ran(store, job_id, T0 + timedelta(minutes=minute), RunState.SUCCEEDED)
    pruner = Pruner(store, clock, RetentionDefaults(keep_runs=2, keep_days=None))
    assert await pruner.prune_all() == 6  # the first pass looks at every job

    await ran(store, ids["job4"], T0 + timedelta(hours=1), RunState.FAILED)
    asked: list[Any] = []

    def record(_conn: Connection, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "keep_runs" in statement:
            asked.append(params)

    event.listen(store.engine.sync_engine, "before_cursor_execute", record)
    try:
        assert await pruner.prune_all() == 1
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", record)
    assert await _count(store, ids["job4"]) == 2
    # One job's counts were read, not six: the pass scales with the new runs.
    [params] = asked
    assert set(params.values() if isinstance(params, dict) else params) == {ids["job4"]}


async def test_running_runs_are_never_pruned(store: SqlStore) -> None:
    clock = FakeClock(T0)
    ids = await _jobs(store, clock, slow={})
    await ran(store, ids["slow"], T0, None)  # still running after a year
    await ran(store, ids["slow"], T0 + DAY, RunState.SUCCEEDED)
    clock.current = T0 + 400 * DAY
    pruner = Pruner(store, clock, RetentionDefaults(keep_runs=1, keep_days=1))
    assert await pruner.prune_all() == 1
    [left] = await store.list_runs(job_id=ids["slow"], limit=10)
    assert left.state is RunState.RUNNING
