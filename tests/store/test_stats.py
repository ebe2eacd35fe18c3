"""Store contract: the counts /metrics reads at every scrape, and the schema revision
/readyz compares with the migrations' head."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from belfry.adapters.store import SqlStore
from belfry.adapters.store.factory import schema_head
from belfry.adapters.store.stats import SCHEMA_VERSION_TABLE
from belfry.core.records import NewRun, Transition, Trigger
from belfry.core.states import Actor, RunState
from tests.store.conftest import AddJob

T0 = datetime(2027, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)
SECOND = timedelta(seconds=1)
S = RunState


def change(run_id: int, target: RunState, *expected: RunState, **kw: Any) -> Transition:
    return Transition(run_id, target, frozenset(expected), Actor.WORKER, **kw)


async def _runs(store: SqlStore, job_id: int, *instants: datetime) -> list[int]:
    made = await store.create_runs(
        [NewRun(job_id, at, trigger=Trigger.MANUAL, not_before=at) for at in instants],
        Actor.USER,
        T0,
    )
    return [run.id for run in made]


async def _finish(store: SqlStore, run_id: int, state: RunState, at: datetime) -> None:
    await store.transition([change(run_id, S.CLAIMED, S.SCHEDULED, worker="w")], at)
    await store.transition([change(run_id, S.RUNNING, S.CLAIMED, host="h", pid=1)], at)
    [ended] = await store.transition([change(run_id, state, S.RUNNING, exit_code=0)], at)
    assert ended.finished_at == at


async def test_live_runs_count_the_due_queue_and_the_runs_in_flight(
    store: SqlStore, add_job: AddJob
) -> None:
    assert await store.count_live_runs(T0) == {}
    job = await add_job("job", cursor=None, now=T0)
    # Three due (the last one exactly now), one prepared ahead: not due yet, not queued.
    await _runs(store, job.id, T0 - 10 * SECOND, T0 - SECOND, T0, T0 + SECOND)
    claimed, running, done = await _runs(
        store, job.id, T0 - 3 * SECOND, T0 - 4 * SECOND, T0 - 5 * SECOND
    )
    await store.transition([change(claimed, S.CLAIMED, S.SCHEDULED, worker="w")], T0)
    await store.transition([change(running, S.CLAIMED, S.SCHEDULED, worker="w")], T0)
    await store.transition([change(running, S.RUNNING, S.CLAIMED, host="h", pid=1)], T0)
    await _finish(store, done, S.FAILED, T0)
    skipped = await store.create_runs(
        [NewRun(job.id, T0 - 6 * SECOND, state=S.SKIPPED, reason="paused")], Actor.SCHEDULER, T0
    )
    assert skipped

    assert await store.count_live_runs(T0) == {S.SCHEDULED: 3, S.CLAIMED: 1, S.RUNNING: 1}
    assert (await store.count_live_runs(T0 + SECOND))[S.SCHEDULED] == 4
    assert (await store.count_live_runs(T0 - 2 * SECOND))[S.SCHEDULED] == 1


async def test_last_successes_are_the_latest_succeeded_finish_of_each_job(
    store: SqlStore, add_job: AddJob
) -> None:
    assert await store.last_successes() == {}
    billing = await add_job("invoices", "billing", cursor=None, now=T0)
    web = await add_job("sitemap", "web", cursor=None, now=T0)
    never = await add_job("flaky", "web", cursor=None, now=T0)
    first, second, failed_later = await _runs(store, billing.id, T0, T0 + SECOND, T0 + 2 * SECOND)
    await _finish(store, first, S.SUCCEEDED, T0 + 10 * SECOND)
    await _finish(store, second, S.SUCCEEDED, T0 + 20 * SECOND)
    # A later failure does not move the last success.
    await _finish(store, failed_later, S.FAILED, T0 + 30 * SECOND)
    [only] = await _runs(store, web.id, T0)
    await _finish(store, only, S.SUCCEEDED, T0 + 5 * SECOND)
    [failed] = await _runs(store, never.id, T0)
    await _finish(store, failed, S.FAILED, T0 + 5 * SECOND)
    await _runs(store, never.id, T0 + SECOND)  # still scheduled

    assert await store.last_successes() == {
        "billing/invoices": T0 + 20 * SECOND,
        "web/sitemap": T0 + 5 * SECOND,
    }


async def test_schema_revision_is_the_migrations_head_and_follows_the_database(
    store: SqlStore,
) -> None:
    # Also proves SCHEMA_VERSION_TABLE is the table the migrations write.
    assert await store.schema_revision() == schema_head()
    async with store.engine.begin() as connection:
        await connection.execute(
            text(f"UPDATE {SCHEMA_VERSION_TABLE} SET version_num = 'from-the-future'")
        )
    assert await store.schema_revision() == "from-the-future"
    async with store.engine.begin() as connection:
        await connection.execute(text(f"DELETE FROM {SCHEMA_VERSION_TABLE}"))
    assert await store.schema_revision() is None
