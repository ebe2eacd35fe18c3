"""Runs made straight in a store, as a worker would have taken them through their states."""

from __future__ import annotations

from datetime import datetime, timedelta

from belfry.core.records import NewRun, RunRecord, Transition
from belfry.core.states import Actor, RunState
from belfry.ports.store import Store


async def ran(
    store: Store,
    job_id: int,
    scheduled_for: datetime,
    end: RunState | None,
    *,
    attempt: int = 1,
    took: timedelta = timedelta(seconds=5),
    exit_code: int | None = None,
    reason: str | None = None,
) -> RunRecord:
    """A run of the job for ``scheduled_for``, claimed and started on time, and ended
    ``end`` ``took`` later (None: still running)."""
    [run] = await store.create_runs(
        [NewRun(job_id, scheduled_for, attempt=attempt)], Actor.SCHEDULER, scheduled_for
    )
    for target in (RunState.CLAIMED, RunState.RUNNING):
        await store.transition(
            [Transition(run.id, target, frozenset({run.state, RunState.CLAIMED}), Actor.WORKER)],
            scheduled_for,
        )
    if end is not None:
        await store.transition(
            [
                Transition(
                    run.id,
                    end,
                    frozenset({RunState.RUNNING}),
                    Actor.WORKER,
                    exit_code=exit_code,
                    reason=reason,
                )
            ],
            scheduled_for + took,
        )
    found = await store.get_run(run.id)
    assert found is not None
    return found
