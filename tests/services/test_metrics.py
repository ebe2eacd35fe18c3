"""Metrics: what the scheduler and the run service count, and the store's facts at the
scrape, against real stores, with a fake clock and no HTTP (the e2e tier scrapes a real
server)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from belfry.adapters.store import SqlStore
from belfry.core.execution import Outcome
from belfry.core.jobs import JobSpec
from belfry.core.records import JobWrite, NewRun, Trigger
from belfry.core.states import Actor, RunState
from belfry.services.metrics import LeaderView, Metrics, skip_kind
from belfry.services.runs import FreeCapacity, RunService, WorkerIdentity
from belfry.services.scheduler import Scheduler
from tests.services.fake_clock import FakeClock

T0 = datetime(2027, 3, 1, 12, 0, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
LEADER = LeaderView(node="a:7711", epoch=None, leading=True)
WORKER = WorkerIdentity(name="w1", host="w1.example")
S = RunState

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(exposition: bytes) -> Samples:
    """Every sample of a scrape, by name and labels (and proof that it parses)."""
    found: Samples = {}
    for family in text_string_to_metric_families(exposition.decode()):
        for sample in family.samples:
            found[sample.name, frozenset(sample.labels.items())] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


async def _add(store: SqlStore, name: str, cursor: datetime | None, **fields: object) -> int:
    spec = JobSpec.model_validate(
        {"name": name, "schedule": "* * * * * *", "command": "true", **fields}
    )
    await store.apply_jobs([JobWrite(spec, cursor)], [], T0)
    job = await store.get_job("default", name)
    assert job is not None
    return job.id


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("paused", "paused"),
        ("overlap: previous run still active", "overlap"),
        ("misfire: coalesced into the run for 2027-03-01T12:00:00Z", "misfire"),
        ("deadline passed: 3m late, starting_deadline is 1m", "deadline"),
        ("calendar:holidays", "calendar"),
        ("calendar:holidays (deferred into a later occurrence)", "calendar"),
        ("target all: no live worker in pool default", "target"),
        ("Schedule changed before this run started", "schedule"),
        (None, "other"),
        ("", "other"),
        ("!!! not a word", "other"),
        ("x" * 40, "other"),
    ],
)
def test_a_skip_reason_becomes_a_label_of_few_values(reason: str | None, kind: str) -> None:
    assert skip_kind(reason) == kind


async def test_the_scheduler_counts_each_skip_by_kind_and_marks_its_fires(
    store: SqlStore,
) -> None:
    await _add(store, "paused", T0, paused=True)
    # Down for a minute: the misfires are skipped, those past the deadline too.
    await _add(store, "skips", T0 - 60 * SECOND, misfire="skip")
    await _add(store, "late", T0 - 60 * SECOND, misfire="skip", starting_deadline="30s")
    clock = FakeClock(T0)
    metrics = Metrics()
    scheduler = Scheduler(
        store, clock, on_runs_created=lambda: None, horizon=timedelta(0), metrics=metrics
    )
    before = samples(await metrics.exposition(store, T0, LEADER))
    assert value(before, "belfry_scheduler_last_fire_timestamp_seconds") is None
    assert value(before, "belfry_runs_skipped_total", reason="misfire") == 0

    await scheduler.run_once()
    clock.current = T0 + 2 * SECOND
    await scheduler.run_once()

    made = await store.list_runs(limit=1000)
    stored = Counter(skip_kind(run.reason) for run in made if run.state is RunState.SKIPPED)
    queued = [run for run in made if run.state is S.SCHEDULED and run.not_before <= clock.now()]
    assert set(stored) == {"paused", "misfire", "deadline"}
    found = samples(await metrics.exposition(store, clock.now(), LEADER))
    for kind, count in stored.items():
        assert value(found, "belfry_runs_skipped_total", reason=kind) == count
    assert value(found, "belfry_scheduler_last_fire_timestamp_seconds") == clock.now().timestamp()
    # What the passes fired is due and no worker took it.
    assert queued and value(found, "belfry_queue_depth") == len(queued)


async def test_the_run_service_times_starts_and_counts_endings_and_skips(
    store: SqlStore,
) -> None:
    clock = FakeClock(T0)
    metrics = Metrics()
    runs = RunService(store, clock, claim_lead=timedelta(0), metrics=metrics)
    ok, bad, doomed = [await _add(store, name, None) for name in ("ok", "bad", "doomed")]
    paused = await _add(store, "paused", None, paused=True)
    made = await store.create_runs(
        [NewRun(job, T0) for job in (ok, bad, doomed, paused)], Actor.SCHEDULER, T0
    )
    by_job = {run.job_id: run.id for run in made}
    # A run killed before it started ends as killed.
    await runs.kill(by_job[doomed])

    clock.current = T0 + SECOND
    assignment = await runs.claim(WORKER, FreeCapacity())
    assert sorted(order.run_id for order in assignment.orders) == sorted([by_job[ok], by_job[bad]])
    found = samples(await metrics.exposition(store, clock.now(), LEADER))
    assert value(found, "belfry_runs_in_flight", state="claimed") == 2
    assert value(found, "belfry_runs_skipped_total", reason="paused") == 1

    clock.current = T0 + 1.5 * SECOND
    await runs.started(by_job[ok], 11, "w1.example")
    await runs.started(by_job[bad], 12, "w1.example")
    clock.current = T0 + 3 * SECOND
    await runs.finished(by_job[ok], Outcome(S.SUCCEEDED, 0))
    await runs.finished(by_job[bad], Outcome(S.FAILED, 3))

    found = samples(await metrics.exposition(store, clock.now(), LEADER))
    assert value(found, "belfry_runs_finished_total", state="succeeded") == 1
    assert value(found, "belfry_runs_finished_total", state="failed") == 1
    assert value(found, "belfry_runs_finished_total", state="killed") == 1
    assert value(found, "belfry_runs_finished_total", state="lost") == 0
    # Both were due at T0 and recorded as started 1.5 s later.
    assert value(found, "belfry_schedule_to_start_seconds_count") == 2
    assert value(found, "belfry_schedule_to_start_seconds_sum") == pytest.approx(3.0)
    assert value(found, "belfry_schedule_to_start_seconds_bucket", le="1.0") == 0
    assert value(found, "belfry_schedule_to_start_seconds_bucket", le="2.5") == 2
    assert value(found, "belfry_runs_in_flight", state="running") == 0
    assert value(found, "belfry_queue_depth") == 0
    assert value(
        found, "belfry_job_last_success_timestamp_seconds", job="default/ok"
    ) == pytest.approx(clock.now().timestamp())
    assert value(found, "belfry_job_last_success_timestamp_seconds", job="default/bad") is None


async def test_a_retry_is_timed_from_its_backoff_not_from_the_occurrence(
    store: SqlStore,
) -> None:
    """A retry starts long after its occurrence by design; the histogram is about how
    late runs start, so it measures from when the run was due (``not_before``)."""
    clock = FakeClock(T0 + 600 * SECOND)
    metrics = Metrics()
    runs = RunService(store, clock, claim_lead=timedelta(0), metrics=metrics)
    job = await _add(store, "job", None)
    retry = NewRun(job, T0, attempt=2, trigger=Trigger.RETRY, not_before=clock.now())
    [run] = await store.create_runs([retry], Actor.SCHEDULER, clock.now())
    await runs.claim(WORKER, FreeCapacity())
    clock.current += 0.2 * SECOND
    await runs.started(run.id, 1, "w1.example")
    found = samples(await metrics.exposition(store, clock.now(), LEADER))
    assert value(found, "belfry_schedule_to_start_seconds_sum") == pytest.approx(0.2)


async def test_workers_leader_and_notifications(store: SqlStore) -> None:
    metrics = Metrics()
    metrics.notification("oncall", "sent")
    metrics.notification("oncall", "sent")
    metrics.notification("mail", "failed")
    with pytest.raises(ValueError, match="sent or failed"):
        metrics.notification("oncall", "bounced")
    follower = LeaderView(node="b:7711", epoch=4, leading=False)
    found = samples(await metrics.exposition(store, T0, follower))
    assert value(found, "belfry_notifications_total", channel="oncall", outcome="sent") == 2
    assert value(found, "belfry_notifications_total", channel="mail", outcome="failed") == 1
    assert value(found, "belfry_leader", node="b:7711") == 1
    assert value(found, "belfry_leader_epoch") == 4
    assert value(found, "belfry_is_leader") == 0
    assert value(found, "belfry_workers", state="active") == 0
    assert value(found, "belfry_workers", state="lost") == 0

    # No valid lease: no leader series, and SQLite has no epoch.
    found = samples(await metrics.exposition(store, T0, LeaderView(None, None, False)))
    assert not [key for key in found if key[0] in {"belfry_leader", "belfry_leader_epoch"}]

    # Each Metrics counts on its own (many servers share one test process).
    other = samples(await Metrics().exposition(store, T0, follower))
    assert value(other, "belfry_notifications_total", channel="oncall", outcome="sent") is None
