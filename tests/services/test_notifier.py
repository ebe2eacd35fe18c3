"""The notifier against real stores and a real webhook receiver, with a fake clock.

Runs are put in the states a worker would leave them in (through the store's own
transitions); the notifier decides and sends; the receiver sees what a user's endpoint
would see.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from belfry.adapters.notify import ChannelSenders
from belfry.adapters.store import SqlStore, open_store
from belfry.core.alerts import GroupSpec
from belfry.core.channels import ChannelSpec
from belfry.core.deliveries import DeliveryState
from belfry.core.jobs import JobSpec
from belfry.core.records import JobAdvance, JobRecord, NewRun, RunRecord, Transition
from belfry.core.states import Actor, RunState
from belfry.services.jobs import JobService
from belfry.services.notifier import Notifier, NotifierSettings
from belfry.services.secret_box import SecretBox
from tests.services.fake_clock import FakeClock
from tests.services.made_runs import ran

T0 = datetime(2027, 3, 1, 12, 0, 0, tzinfo=UTC)
SECRET = "hook-secret"


@dataclass
class Rig:
    store: SqlStore
    clock: FakeClock
    jobs: JobService
    notifier: Notifier
    server: HTTPServer

    def received(self) -> list[dict[str, Any]]:
        """The alerts the receiver got, each checked against its signature."""
        alerts = []
        for request, _ in self.server.log:
            body = request.get_data()
            timestamp = request.headers["X-Belfry-Timestamp"]
            expected = hmac.new(
                SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
            ).hexdigest()
            assert request.headers["X-Belfry-Signature"] == f"sha256={expected}"
            alerts.append(json.loads(body))
        return alerts

    async def job(self, name: str, **extra: Any) -> JobRecord:
        spec = JobSpec.model_validate(
            {"name": name, "schedule": "* * * * *", "command": "true", **extra}
        )
        await self.jobs.apply([spec])
        record = await self.store.get_job(spec.group, name)
        assert record is not None
        return record

    async def run(
        self,
        job: JobRecord,
        minute: int,
        end: RunState | None,
        *,
        attempt: int = 1,
        duration: timedelta = timedelta(seconds=5),
        exit_code: int | None = None,
        reason: str | None = None,
    ) -> RunRecord:
        """A run of ``job`` for T0 + ``minute``, started on time and ended ``end`` after
        ``duration`` (None: still running)."""
        return await ran(
            self.store,
            job.id,
            T0 + timedelta(minutes=minute),
            end,
            attempt=attempt,
            took=duration,
            exit_code=exit_code,
            reason=reason,
        )

    async def pass_(self, at: datetime) -> None:
        """The leader's evaluation and a delivery pass at ``at``."""
        self.clock.current = at
        await self.notifier.evaluate()
        await self.notifier.deliver()


@pytest.fixture
async def rig(store_url: str, httpserver: HTTPServer) -> AsyncIterator[Rig]:
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    store = await open_store(store_url)
    clock = FakeClock(T0 - timedelta(minutes=1))
    jobs = JobService(
        store, clock, on_change=lambda: None, secrets=SecretBox(SecretBox.generate_key())
    )
    await jobs.apply(
        [],
        channels=[
            ChannelSpec.model_validate(
                {"name": "hook", "webhook": {"url": httpserver.url_for("/hook"), "secret": SECRET}}
            )
        ],
    )
    senders = ChannelSenders()
    notifier = Notifier(
        store, clock, jobs.channels, senders, NotifierSettings(stall_after=timedelta(minutes=2))
    )
    try:
        yield Rig(store, clock, jobs, notifier, httpserver)
    finally:
        await senders.aclose()
        await store.close()


async def test_a_failure_streak_alerts_once_then_recovers_once(rig: Rig) -> None:
    job = await rig.job("billing", notify=["hook"])
    await rig.run(job, 0, RunState.SUCCEEDED)
    await rig.pass_(T0 + timedelta(seconds=30))
    assert rig.received() == [], "a success after nothing is no recovery"
    for minute in (1, 2, 3):
        run = await rig.run(job, minute, RunState.FAILED, exit_code=3)
        await rig.pass_(T0 + timedelta(minutes=minute, seconds=30))
        if minute == 1:
            first_failure = run
    await rig.run(job, 4, RunState.SUCCEEDED)
    await rig.pass_(T0 + timedelta(minutes=4, seconds=30))
    await rig.pass_(T0 + timedelta(minutes=5))  # nothing new
    alerts = rig.received()
    assert [(a["kind"], a["run_id"]) for a in alerts] == [
        ("failure", first_failure.id),
        ("recovery", first_failure.id + 3),
    ]
    assert alerts[0]["summary"] == "failed with exit code 3"
    assert alerts[0]["job"] == "default/billing"
    deliveries = await rig.store.list_deliveries(channel="hook")
    assert {d.state for d in deliveries} == {DeliveryState.SENT}


async def test_a_long_streak_realerts_after_the_channels_interval(rig: Rig) -> None:
    job = await rig.job("nightly", notify=["hook"], alerts=[{"on": "failure", "realert": "5m"}])
    for minute in range(13):
        await rig.run(job, minute, RunState.FAILED, exit_code=1)
        await rig.pass_(T0 + timedelta(minutes=minute, seconds=30))
    # The first failure alerts (at 12:00:30); then the first run to end 5 min or more
    # after the last alert (12:06:05), and so on. Each run alerts at most once.
    assert [(a["kind"], a["scheduled_for"], a["summary"]) for a in rig.received()] == [
        ("failure", "2027-03-01T12:00:00Z", "failed with exit code 1"),
        ("failure", "2027-03-01T12:06:00Z", "failed with exit code 1 (still failing)"),
        ("failure", "2027-03-01T12:12:00Z", "failed with exit code 1 (still failing)"),
    ]


async def test_a_failure_that_will_be_retried_does_not_alert_yet(rig: Rig) -> None:
    job = await rig.job("retried", notify=["hook"], retries={"max": 1})
    first = await rig.run(job, 0, RunState.FAILED, exit_code=1)
    await rig.store.create_runs(
        [NewRun(job.id, first.scheduled_for, attempt=2)], Actor.SCHEDULER, T0
    )
    await rig.pass_(T0 + timedelta(seconds=30))
    assert rig.received() == []
    run = await rig.store.list_runs(job_id=job.id, states=[RunState.SCHEDULED])
    for target in (RunState.CLAIMED, RunState.RUNNING, RunState.FAILED):
        await rig.store.transition(
            [
                Transition(
                    run[0].id,
                    target,
                    frozenset({RunState.SCHEDULED, RunState.CLAIMED, RunState.RUNNING}),
                    Actor.WORKER,
                    exit_code=1,
                )
            ],
            T0 + timedelta(seconds=40),
        )
    await rig.pass_(T0 + timedelta(seconds=50))
    assert [(a["kind"], a["attempt"]) for a in rig.received()] == [("failure", 2)]


async def test_late_too_long_and_too_short(rig: Rig) -> None:
    job = await rig.job(
        "timed",
        alerts=[
            {"on": "late", "after": "2m", "notify": ["hook"]},
            {"on": "too_long", "after": "10m", "notify": ["hook"]},
            {"on": "too_short", "under": "2s", "notify": ["hook"]},
        ],
    )
    waiting = (await rig.store.create_runs([NewRun(job.id, T0)], Actor.SCHEDULER, T0))[0]
    running = await rig.run(job, 1, None)
    await rig.run(job, 2, RunState.SUCCEEDED, duration=timedelta(milliseconds=300))
    await rig.pass_(T0 + timedelta(minutes=2, seconds=30))
    await rig.pass_(T0 + timedelta(minutes=11, seconds=30))
    await rig.pass_(T0 + timedelta(minutes=12))
    got = sorted((a["kind"], a["run_id"]) for a in rig.received())
    assert got == sorted(
        [
            ("late", waiting.id),
            ("too_short", running.id + 1),
            ("too_long", running.id),
        ]
    )
    late = next(a for a in rig.received() if a["kind"] == "late")
    assert late["summary"].startswith("not started 2m30s after its time")


async def test_skips_alert_once_per_pass_and_pauses_do_not(rig: Rig) -> None:
    job = await rig.job("catch-up", notify=["hook"])
    await rig.store.create_runs(
        [
            NewRun(
                job.id,
                T0 + timedelta(minutes=m),
                state=RunState.SKIPPED,
                reason="misfire: coalesced into the run for 12:05",
            )
            for m in range(5)
        ]
        + [NewRun(job.id, T0 + timedelta(minutes=9), state=RunState.SKIPPED, reason="paused")],
        Actor.SCHEDULER,
        T0 + timedelta(minutes=10),
    )
    await rig.pass_(T0 + timedelta(minutes=10, seconds=1))
    alerts = rig.received()
    assert [a["kind"] for a in alerts] == ["missed"]
    assert alerts[0]["summary"].startswith("5 occurrences skipped, 2027-03-01T12:00:00Z to")


async def test_a_stalled_scheduler_alerts_once_and_its_return_once(rig: Rig) -> None:
    job = await rig.job("heartbeat", group="ops", notify=["hook"])
    # Nobody fires it: its cursor (12:00) stays put while time passes.
    rig.clock.current = T0 + timedelta(minutes=1)
    assert await rig.notifier.watch() == 0, "1 min overdue is within stall_after"
    rig.clock.current = T0 + timedelta(minutes=3)
    assert await rig.notifier.watch() == 1
    rig.clock.current = T0 + timedelta(minutes=4)
    assert await rig.notifier.watch() == 0, "the same stall alerts once"
    # The scheduler comes back: it skips what it missed and fires again.
    skipped = [
        NewRun(job.id, T0 + timedelta(minutes=m), state=RunState.SKIPPED, reason="misfire: x")
        for m in range(5)
    ]
    advance = JobAdvance(job.id, T0, T0 + timedelta(minutes=6), skipped)
    assert await rig.store.advance_jobs([advance], T0 + timedelta(minutes=5)) == 1
    rig.clock.current = T0 + timedelta(minutes=5, seconds=10)
    assert await rig.notifier.watch() == 1  # fires again
    await rig.pass_(T0 + timedelta(minutes=5, seconds=20))
    # Both are delivered in the same pass, concurrently: in either order.
    summaries = {a["kind"]: a["summary"] for a in rig.received()}
    assert len(rig.received()) == 2 and summaries.keys() == {"missed", "recovery"}
    assert summaries["missed"].startswith("not fired: due 2027-03-01T12:00:00Z, 3m ago")
    assert summaries["recovery"] == "fires again (had stalled from 2027-03-01T12:00:00Z)"


async def test_a_failed_delivery_is_retried_with_backoff(rig: Rig, httpserver: HTTPServer) -> None:
    httpserver.clear()
    answers = iter([500, 200])

    def answer(request: Request) -> Response:
        return Response("x", status=next(answers))

    httpserver.expect_request("/hook", method="POST").respond_with_handler(answer)
    job = await rig.job("flaky-hook", notify=["hook"])
    await rig.run(job, 0, RunState.FAILED, exit_code=2)
    await rig.pass_(T0 + timedelta(seconds=30))
    [delivery] = await rig.store.list_deliveries(channel="hook")
    assert delivery.state is DeliveryState.PENDING and delivery.attempts == 1
    assert delivery.last_error is not None and "500" in delivery.last_error
    await rig.pass_(T0 + timedelta(seconds=32))  # before the 5 s backoff: not tried
    assert len(httpserver.log) == 1
    await rig.pass_(T0 + timedelta(seconds=36))
    [delivery] = await rig.store.list_deliveries(channel="hook")
    assert delivery.state is DeliveryState.SENT and delivery.attempts == 2
    assert len(httpserver.log) == 2


async def test_two_servers_deciding_at_once_enqueue_one_delivery(rig: Rig, store_url: str) -> None:
    job = await rig.job("raced", notify=["hook"])
    await rig.run(job, 0, RunState.FAILED, exit_code=1)
    other_store = await open_store(store_url)
    try:
        other = Notifier(other_store, rig.clock, rig.jobs.channels, ChannelSenders())
        rig.clock.current = T0 + timedelta(seconds=30)
        assert await rig.notifier.evaluate() + await other.evaluate() == 1
    finally:
        await other_store.close()


async def test_group_rules_apply_to_the_groups_jobs(rig: Rig) -> None:
    await rig.jobs.apply([], groups=[GroupSpec(name="default", notify=["hook"])])
    job = await rig.job("grouped")
    await rig.run(job, 0, RunState.TIMED_OUT)
    await rig.pass_(T0 + timedelta(seconds=30))
    assert [(a["kind"], a["summary"]) for a in rig.received()] == [("failure", "timed out")]


async def test_a_job_naming_a_missing_channel_is_refused(rig: Rig) -> None:
    with pytest.raises(ValueError, match="job default/x: notify: no such channel 'nope'"):
        await rig.jobs.apply(
            [JobSpec(name="x", schedule="@daily", command="true", notify=["nope"])]
        )


async def test_a_run_no_worker_takes_before_its_deadline_is_missed(rig: Rig) -> None:
    job = await rig.job("deadlined", notify=["hook"], starting_deadline="2m")
    [waiting] = await rig.store.create_runs([NewRun(job.id, T0)], Actor.SCHEDULER, T0)
    await rig.pass_(T0 + timedelta(minutes=1))
    assert rig.received() == []
    await rig.pass_(T0 + timedelta(minutes=2, seconds=1))
    await rig.pass_(T0 + timedelta(minutes=3))
    alerts = rig.received()
    assert [(a["kind"], a["run_id"]) for a in alerts] == [("missed", waiting.id)]
    assert alerts[0]["summary"] == "not started within its starting_deadline (2m)"
