"""Store contract: the jobs page's search, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from belfry.adapters.store import SqlStore
from belfry.core.jobs import JobSpec
from belfry.core.records import JobWrite
from belfry.core.states import RunState
from tests.services.made_runs import ran

T0 = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


async def test_search_counts_pages_and_filters(store: SqlStore) -> None:
    specs = [
        JobSpec.model_validate(
            {
                "name": f"job-{n:03d}",
                "group": "billing" if n % 2 else "reports",
                "schedule": "@daily",
                "command": "true",
                "description": f"Invoice run {n}" if n % 5 == 0 else "",
                "pool": "gpu" if n == 7 else "default",
                "paused": n == 8,
            }
        )
        for n in range(60)
    ]
    await store.apply_jobs([JobWrite(spec, T0) for spec in specs], [], T0)
    total, page = await store.search_jobs(groups=None, offset=50, limit=50)
    # billing (the 30 odd ones) first, then reports: the 21st report is job-040.
    assert total == 60 and len(page) == 10
    assert [job.key.name for job in page][:2] == ["job-040", "job-042"]
    total, found = await store.search_jobs(groups=None, words=["INVOICE"])
    assert total == 12 and all(job.spec.description for job in found)
    total, found = await store.search_jobs(groups=None, words=["invoice", "billing/"])
    assert total == 6  # the odd multiples of 5
    assert (await store.search_jobs(groups=None, words=["gpu"]))[0] == 1
    assert (await store.search_jobs(groups=None, words=["50%"]))[0] == 0  # no wildcard
    assert (await store.search_jobs(groups={"reports"}, group="billing"))[0] == 0
    assert (await store.search_jobs(groups=set()))[0] == 0
    total, found = await store.search_jobs(groups=None, paused=True)
    assert total == 1 and found[0].key.name == "job-008"
    assert await store.job_groups(None) == ["billing", "reports"]
    assert await store.job_groups({"reports", "other"}) == ["reports"]


async def test_upcoming_jobs_come_by_their_cursor(store: SqlStore) -> None:
    def spec(n: int, group: str, **extra: object) -> JobSpec:
        data = {"name": f"job-{n}", "group": group, "schedule": "@daily", "command": "true"}
        return JobSpec.model_validate(data | extra)

    writes = [
        JobWrite(spec(0, "a"), T0 + timedelta(minutes=30)),
        JobWrite(spec(1, "b"), T0 + timedelta(minutes=10)),
        JobWrite(spec(2, "a"), T0 + timedelta(minutes=20)),
        JobWrite(spec(3, "a", paused=True), T0 + timedelta(minutes=1)),  # paused: not shown
        JobWrite(spec(4, "b"), None),  # no cursor (ended): not shown
    ]
    await store.apply_jobs(writes, [], T0)
    names = [job.key.name for job in await store.upcoming_jobs(groups=None, limit=10)]
    assert names == ["job-1", "job-2", "job-0"]
    names = [job.key.name for job in await store.upcoming_jobs(groups={"a"}, limit=1)]
    assert names == ["job-2"]
    assert await store.upcoming_jobs(groups=set(), limit=10) == []


async def test_search_by_the_state_of_each_jobs_latest_run(store: SqlStore) -> None:
    specs = [
        JobSpec(name=name, schedule="@daily", command="true")
        for name in ("broke", "fixed", "busy", "never")
    ]
    await store.apply_jobs([JobWrite(spec, T0) for spec in specs], [], T0)
    ids = {job.key.name: job.id for job in await store.list_jobs()}
    # broke: ok then failed; fixed: failed then ok; busy: failed then running; never: none.
    history = {
        "broke": [RunState.SUCCEEDED, RunState.FAILED],
        "fixed": [RunState.FAILED, RunState.SUCCEEDED],
        "busy": [RunState.FAILED, None],
    }
    for name, ends in history.items():
        for minute, end in enumerate(ends):
            await ran(store, ids[name], T0 + timedelta(minutes=minute), end)
    failing = frozenset({RunState.FAILED, RunState.TIMED_OUT, RunState.LOST})
    total, found = await store.search_jobs(groups=None, latest_states=failing)
    assert total == 1 and [job.key.name for job in found] == ["broke"]
    total, found = await store.search_jobs(groups=None, latest_states={RunState.RUNNING})
    assert total == 1 and [job.key.name for job in found] == ["busy"]
    assert (await store.search_jobs(groups={"other"}, latest_states=failing))[0] == 0
