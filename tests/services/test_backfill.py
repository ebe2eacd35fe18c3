"""Backfill against real stores, with a fake clock: what it plans, that it never runs an
occurrence twice, and that its runs are paced at claim time from what the store holds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from belfry.adapters.store import SqlStore, open_store
from belfry.core.calendars import CalendarSpec
from belfry.core.execution import Outcome
from belfry.core.jobs import JobSpec
from belfry.core.records import JobRecord, JobWrite, NewRun, Transition, Trigger
from belfry.core.states import Actor, RunState
from belfry.services.backfill import (
    BackfillError,
    BackfillLimit,
    BackfillOverlap,
    BackfillRequest,
    BackfillService,
    OccurrenceStatus,
    backfill_limit,
)
from belfry.services.runs import RunService, WorkerIdentity
from tests.services.fake_clock import FakeClock

NOW = datetime(2027, 4, 1, 12, 0, 0, tzinfo=UTC)
WORKER = WorkerIdentity("w1", "host1")


def _spec(name: str, **extra: object) -> JobSpec:
    return JobSpec.model_validate(
        {"name": name, "schedule": "0 * * * *", "command": "true", **extra}
    )


async def _job(store: SqlStore, spec: JobSpec, calendars: Sequence[CalendarSpec] = ()) -> JobRecord:
    # The cursor is in the future: the scheduler has nothing to do with the past range.
    await store.apply_jobs([JobWrite(spec, NOW + timedelta(hours=1))], [], NOW, calendars=calendars)
    job = await store.get_job(spec.group, spec.name)
    assert job is not None
    return job


def _service(store: SqlStore, clock: FakeClock) -> BackfillService:
    return BackfillService(store, clock, on_runs_created=lambda: None)


async def _finish(runs: RunService, run_id: int) -> None:
    await runs.started(run_id, 4242, "host1")
    await runs.finished(run_id, Outcome(RunState.SUCCEEDED, 0))


def test_the_limit_rides_in_the_waiting_reason() -> None:
    for limit in (BackfillLimit(), BackfillLimit(3, alone=False), BackfillLimit(1, alone=False)):
        assert backfill_limit(limit.reason()) == limit
    # Replaced meanwhile (handed back): the strictest limit.
    assert backfill_limit("waiting: handed back unstarted") == BackfillLimit(1, alone=True)
    assert backfill_limit(None) == BackfillLimit(1, alone=True)


async def test_dry_run_follows_the_jobs_zone_dst_and_calendars(store_url: str) -> None:
    store = await open_store(store_url)
    try:
        holidays = CalendarSpec.model_validate(
            {"name": "holidays", "timezone": "Europe/Berlin", "dates": ["2027-03-29"]}
        )
        job = await _job(
            store,
            _spec("nightly", schedule="30 2 * * *", timezone="Europe/Berlin", exclude=["holidays"]),
            [holidays],
        )
        plan = await _service(store, FakeClock(NOW)).backfill(
            job,
            BackfillRequest(
                start=datetime(2027, 3, 27, tzinfo=UTC),
                end=datetime(2027, 3, 30, 23, 0, tzinfo=UTC),
                dry_run=True,
            ),
        )
        # 02:30 does not exist on 28 March (spring forward): it runs right after the gap.
        assert [(o.scheduled_for, o.status) for o in plan.occurrences] == [
            (datetime(2027, 3, 27, 1, 30, tzinfo=UTC), OccurrenceStatus.RUN),
            (datetime(2027, 3, 28, 1, 0, tzinfo=UTC), OccurrenceStatus.RUN),
            (datetime(2027, 3, 29, 0, 30, tzinfo=UTC), OccurrenceStatus.SKIPPED),
            (datetime(2027, 3, 30, 0, 30, tzinfo=UTC), OccurrenceStatus.RUN),
        ]
        assert "holidays" in (plan.occurrences[2].note or "")
        assert plan.runs == [] and await store.list_runs() == []
    finally:
        await store.close()


async def test_an_occurrence_that_has_a_run_is_never_run_again(store_url: str) -> None:
    store = await open_store(store_url)
    try:
        clock = FakeClock(NOW)
        job = await _job(store, _spec("hourly"))
        at = [NOW - timedelta(hours=hours) for hours in (3, 2, 1)]
        # 09:00 ran (and failed), 10:00 was skipped while paused, 11:00 never happened.
        made = await store.create_runs(
            [NewRun(job.id, at[0], not_before=at[0]), NewRun(job.id, at[1], not_before=at[1])],
            Actor.SCHEDULER,
            NOW,
        )
        await store.transition(
            [
                Transition(
                    made[0].id, RunState.FAILED, frozenset({RunState.SCHEDULED}), Actor.USER
                ),
                Transition(
                    made[1].id,
                    RunState.SKIPPED,
                    frozenset({RunState.SCHEDULED}),
                    Actor.SCHEDULER,
                    reason="paused",
                ),
            ],
            NOW,
        )
        request = BackfillRequest(start=at[0], end=at[2])
        plan = await _service(store, clock).backfill(job, request)
        assert [o.status for o in plan.occurrences] == [
            OccurrenceStatus.ALREADY_RAN,
            OccurrenceStatus.RUN,
            OccurrenceStatus.RUN,
        ]
        assert plan.occurrences[0].run_id == made[0].id
        assert plan.occurrences[1].note == "was skipped: paused"
        # The skipped occurrence runs as its next attempt; the key stays unique.
        assert [(r.scheduled_for, r.attempt, r.trigger) for r in plan.runs] == [
            (at[1], 2, Trigger.BACKFILL),
            (at[2], 1, Trigger.BACKFILL),
        ]
        # The same backfill again (or a racing one) makes nothing.
        again = await _service(store, clock).backfill(job, request)
        assert again.runs == []
        assert {o.status for o in again.occurrences} == {OccurrenceStatus.ALREADY_RAN}
        assert len(await store.list_runs(job_id=job.id)) == 4
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (NOW - timedelta(hours=1), NOW + timedelta(hours=1), "--to:"),
        (NOW - timedelta(hours=1), NOW - timedelta(hours=2), "--from is after --to"),
        (NOW - timedelta(days=500), NOW, "more than 10000 occurrences"),
    ],
)
async def test_bad_ranges_are_refused(
    store_url: str, start: datetime, end: datetime, message: str
) -> None:
    store = await open_store(store_url)
    try:
        job = await _job(store, _spec("hourly"))
        with pytest.raises(BackfillError, match=message):
            await _service(store, FakeClock(NOW)).backfill(job, BackfillRequest(start, end))
        assert await store.list_runs() == []
    finally:
        await store.close()


async def test_backfill_runs_go_one_at_a_time_even_across_a_restart(store_url: str) -> None:
    store = await open_store(store_url)
    try:
        clock = FakeClock(NOW)
        job = await _job(store, _spec("hourly"))
        plan = await _service(store, clock).backfill(
            job, BackfillRequest(start=NOW - timedelta(hours=3), end=NOW - timedelta(hours=1))
        )
        assert len(plan.runs) == 3
        runs = RunService(store, clock, claim_lead=timedelta(0))
        first = await runs.claim(WORKER, None)
        assert [order.scheduled_for for order in first.orders] == [NOW - timedelta(hours=3)]
        assert (await runs.claim(WORKER, None)).orders == []
        # A new server (restart, failover) knows the limit from the store alone.
        restarted = RunService(store, clock, claim_lead=timedelta(0))
        assert (await restarted.claim(WORKER, None)).orders == []
        await _finish(runs, first.orders[0].run_id)
        clock.current += timedelta(seconds=1)
        second = await restarted.claim(WORKER, None)
        assert [order.scheduled_for for order in second.orders] == [NOW - timedelta(hours=2)]
        claimed = await store.get_run(second.orders[0].run_id)
        assert claimed is not None and not claimed.reason  # the waiting note is cleared
        waiting = await store.list_runs(states=[RunState.SCHEDULED])
        assert [run.reason for run in waiting] == ["waiting: backfill, 1 at a time"]
    finally:
        await store.close()


async def test_forbid_waits_for_the_jobs_other_runs(store_url: str) -> None:
    store = await open_store(store_url)
    try:
        clock = FakeClock(NOW)
        job = await _job(store, _spec("hourly"))
        runs = RunService(store, clock, claim_lead=timedelta(0))
        manual = await runs.trigger(job)
        assert [o.run_id for o in (await runs.claim(WORKER, None)).orders] == [manual[0].id]
        await _service(store, clock).backfill(
            job, BackfillRequest(start=NOW - timedelta(hours=1), end=NOW - timedelta(hours=1))
        )
        assert (await runs.claim(WORKER, None)).orders == []
        await _finish(runs, manual[0].id)
        assert len((await runs.claim(WORKER, None)).orders) == 1
    finally:
        await store.close()


async def test_allow_runs_up_to_max_parallel_paced_by_rate(store_url: str) -> None:
    store = await open_store(store_url)
    try:
        clock = FakeClock(NOW)
        job = await _job(store, _spec("hourly"))
        plan = await _service(store, clock).backfill(
            job,
            BackfillRequest(
                start=NOW - timedelta(hours=5),
                end=NOW - timedelta(hours=1),
                overlap=BackfillOverlap.ALLOW,
                max_parallel=2,
                rate=60,  # one a second
            ),
        )
        assert [run.not_before - NOW for run in plan.runs] == [
            timedelta(seconds=n) for n in range(5)
        ]
        runs = RunService(store, clock, claim_lead=timedelta(0))
        assert len((await runs.claim(WORKER, None)).orders) == 1  # the rate holds the rest
        clock.current = NOW + timedelta(seconds=10)
        assert len((await runs.claim(WORKER, None)).orders) == 1  # two at once, at most
        assert (await runs.claim(WORKER, None)).orders == []
    finally:
        await store.close()


async def test_a_paused_job_skips_its_waiting_backfill_runs(store_url: str) -> None:
    store = await open_store(store_url)
    try:
        clock = FakeClock(NOW)
        job = await _job(store, _spec("hourly"))
        await _service(store, clock).backfill(
            job, BackfillRequest(start=NOW - timedelta(hours=2), end=NOW - timedelta(hours=1))
        )
        await store.set_paused(job.id, True, None, NOW)
        runs = RunService(store, clock, claim_lead=timedelta(0))
        assert (await runs.claim(WORKER, None)).orders == []
        skipped = await store.list_runs(states=[RunState.SKIPPED])
        assert [run.reason for run in skipped] == ["paused", "paused"]
    finally:
        await store.close()


async def test_a_large_backfill_never_crowds_out_other_jobs_runs(store_url: str) -> None:
    """Backfill runs come after every other due run in a claim batch."""
    store = await open_store(store_url)
    try:
        now = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
        spec = JobSpec(name="old", schedule="@daily", command="true")
        other = JobSpec(name="other", schedule="@daily", command="true")
        await store.apply_jobs([JobWrite(spec, now), JobWrite(other, now)], [], now)
        old = await store.get_job("default", "old")
        fresh = await store.get_job("default", "other")
        assert old is not None and fresh is not None
        backfill = [
            NewRun(old.id, now - timedelta(days=d), trigger=Trigger.BACKFILL, not_before=now)
            for d in range(1, 30)
        ]
        await store.create_runs(backfill, Actor.USER, now)
        [regular] = await store.create_runs(
            [NewRun(fresh.id, now, not_before=now)], Actor.SCHEDULER, now
        )
        batch = await store.due_runs(now, limit=10)
        assert batch[0].id == regular.id
        assert {run.trigger for run in batch[1:]} == {Trigger.BACKFILL}
    finally:
        await store.close()
