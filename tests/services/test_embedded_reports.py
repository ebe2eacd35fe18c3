"""The embedded worker's reports while the database is away: they wait for it and are
stored once it is back, instead of failing (which made the executor kill the run)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from belfry.adapters.store import open_store
from belfry.core.execution import Outcome
from belfry.core.jobs import JobSpec
from belfry.core.records import JobWrite, NewRun, OutputChunk
from belfry.core.states import Actor, RunState
from belfry.server.embedded import EmbeddedLink
from belfry.services.runs import FreeCapacity, RunService, WorkerIdentity
from tests.private_postgres import PrivatePostgres
from tests.services.fake_clock import FakeClock

pytestmark = pytest.mark.postgres

T0 = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
WORKER = WorkerIdentity(name="vm/embedded", host="vm")


async def test_reports_made_while_the_database_is_away_are_stored_when_it_is_back(
    private_pg: PrivatePostgres,
) -> None:
    store = await open_store(private_pg.create_database("belfry"))
    try:
        spec = JobSpec.model_validate({"name": "job", "schedule": "@yearly", "command": "true"})
        await store.apply_jobs([JobWrite(spec, None)], [], T0)
        job = await store.get_job("default", "job")
        assert job is not None
        [run] = await store.create_runs([NewRun(job.id, T0)], Actor.SCHEDULER, T0)
        runs = RunService(store, FakeClock(T0 + timedelta(seconds=1)), claim_lead=timedelta(0))
        assignment = await runs.claim(WORKER, FreeCapacity())
        assert [order.run_id for order in assignment.orders] == [run.id]
        link = EmbeddedLink(runs, WORKER)

        private_pg.stop()
        started = asyncio.create_task(link.started(run.id, 4242, "vm"))
        await asyncio.sleep(1.5)  # several tries, each refused
        assert not started.done(), "the report gave up (or claimed success) with no database"
        private_pg.start()
        async with asyncio.timeout(60):
            await started
        await link.output([OutputChunk(run.id, 0, "stdout", "hello\n", T0)])
        await link.finished(run.id, Outcome(RunState.SUCCEEDED, exit_code=0))

        stored = await store.get_run(run.id)
        assert stored is not None
        assert (stored.state, stored.pid, stored.exit_code) == (RunState.SUCCEEDED, 4242, 0)
        assert [chunk.data for chunk in await store.read_output(run.id)] == ["hello\n"]
    finally:
        await store.close()
