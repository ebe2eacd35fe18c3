"""The notifier: decides alerts from what runs did (or did not do), and delivers them.

Three loops:
- ``evaluate`` (the leader's): reads the runs that ended since its mark (kept in the
  store, so a new leader goes on where the old one stopped, re-reading a short overlap),
  and the runs still waiting or running, and enqueues the alerts their jobs' rules ask for.
- ``watch`` (every server): the dead man's switch. A job whose cursor is more than
  ``stall_after`` overdue has not been fired by any scheduler: its ``missed`` rules alert
  once, and alert ``recovery`` once it fires again. Every server watches, so a hung or
  crashed leader is noticed even when it is the only one.
- ``deliver`` (every server): sends due deliveries, each taken under a lease, retried with
  backoff (``core.deliveries``).

Every alert is enqueued under a key naming what it is about, so deciding it twice (two
servers, a failover, the overlap of the mark) enqueues it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from belfry.core.alerts import (
    FAILURE_STATES,
    Alert,
    AlertKind,
    BoundRule,
    GroupSpec,
    bind_rules,
    failure_alert_due,
)
from belfry.core.channels import ChannelSpec
from belfry.core.deliveries import (
    MAX_ATTEMPTS,
    ChannelRecord,
    DeliveryRecord,
    DeliveryState,
    NewDelivery,
    retry_delay,
)
from belfry.core.durations import format_duration
from belfry.core.records import JobRecord, RunRecord
from belfry.core.states import RunState
from belfry.ports.clock import Clock
from belfry.ports.notifications import ChannelSender, DeliveryFailed
from belfry.ports.store import Store
from belfry.services.channels import ChannelCatalog
from belfry.services.ended_runs import EndedRuns, repeat_passes
from belfry.services.secret_box import SecretUnreadable
from belfry.services.wakeups import Wakeup

__all__ = ["Notifier", "NotifierSettings"]

log = logging.getLogger(__name__)

_FINISHED_MARK = "finished"
_BATCH = 500
_TAIL_LINES = 20
_TAIL_CHARS = 2000
# A median of fewer successful runs says little about how long the job takes.
_MIN_SAMPLES = 3
_SAMPLES = 20
# Skips that are what the user asked for, not misses: a pause, a calendar's exclusion.
_INTENDED_SKIPS = ("paused", "calendar")
_SEND_LEASE = timedelta(minutes=2)


@dataclass(frozen=True)
class NotifierSettings:
    # Seconds between evaluations and delivery passes when nothing wakes them: a run's
    # end wakes the evaluation (on every server sharing the database), new deliveries
    # the delivery pass; the interval catches retries that came due.
    interval: float = 5.0
    watch_interval: float = 5.0
    # A job's cursor overdue by more than this: the scheduler is not firing it.
    stall_after: timedelta = timedelta(minutes=1)


def _stall_mark(job_id: int) -> str:
    return f"stall:{job_id}"


def _stall_end_mark(job_id: int) -> str:
    return f"stall-end:{job_id}"


def _instant(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


class Notifier:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        channels: ChannelCatalog,
        sender: ChannelSender,
        settings: NotifierSettings | None = None,
        on_delivery: Callable[[str, str], None] | None = None,
    ) -> None:
        """``on_delivery(channel, "sent" | "failed")`` is told each attempt's outcome
        (metrics)."""
        self._store = store
        self._finished = EndedRuns(store, _FINISHED_MARK)
        self._clock = clock
        self._channels = channels
        self._sender = sender
        self.settings = settings or NotifierSettings()
        self._on_delivery = on_delivery
        self._wake = asyncio.Event()
        self._evaluation = Wakeup()
        self._active_checked: datetime | None = None

    def wake(self) -> None:
        """Deliver now (deliveries were enqueued): without waiting for the interval."""
        self._wake.set()

    def runs_ended(self) -> None:
        """Evaluate now (runs ended, or were recorded skipped): alerts go out at once."""
        self._evaluation.ring()

    # -- loops ------------------------------------------------------------------------------
    async def run_leader_forever(self) -> None:
        await repeat_passes(
            self.evaluate, self._evaluation, self.settings.interval, "notifier evaluation"
        )

    async def run_forever(self) -> None:
        """Every server: the dead man's switch and deliveries."""
        last_watch = float("-inf")
        loop = asyncio.get_running_loop()
        while True:
            try:
                if loop.time() - last_watch >= self.settings.watch_interval:
                    last_watch = loop.time()
                    await self.watch()
                await self.deliver()
            except asyncio.CancelledError:
                raise
            except ConnectionError as error:
                log.warning("notifier: %s", error)
            except Exception:
                log.exception("notifier pass failed")
            await self._pause(self.settings.interval)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    # -- deciding ---------------------------------------------------------------------------
    async def evaluate(self) -> int:
        """One pass of the leader's decisions; returns how many deliveries it enqueued."""
        now = self._clock.now()
        ended, mark = await self._finished.read(now)
        active: list[RunRecord] = []
        # Waiting and running runs (late, too long, past their deadline) are looked at
        # every watch_interval, not every pass: a queue or a big backfill is many rows.
        if self._active_checked is None or now - self._active_checked >= timedelta(
            seconds=self.settings.watch_interval
        ):
            self._active_checked = now
            active = await self._store.runs_in_states(
                [RunState.SCHEDULED, RunState.CLAIMED, RunState.RUNNING]
            )
        context = await _Context.load(self._store, self._channels, [*ended, *active])
        new: list[NewDelivery] = []
        new += await self._ended(context, ended, now)
        new += await self._active(context, active, now)
        enqueued = await self._store.enqueue_deliveries(new, now)
        await self._finished.advance(ended, mark, now)
        if enqueued:
            self.wake()
        return len(enqueued)

    async def _ended(
        self, context: _Context, runs: Sequence[RunRecord], now: datetime
    ) -> list[NewDelivery]:
        new: list[NewDelivery] = []
        skipped: dict[tuple[int, str], list[RunRecord]] = defaultdict(list)
        for run in runs:
            rules = context.rules(run.job_id)
            if not rules:
                continue
            if run.state is RunState.SKIPPED:
                if not (run.reason or "").startswith(_INTENDED_SKIPS):
                    if await self._within_stall(run):
                        continue  # the stall alert said it already
                    for rule in rules:
                        if rule.kind is AlertKind.MISSED:
                            skipped[(run.job_id, rule.channel)].append(run)
                continue
            new += self._late(run, rules, now)
            if run.state in FAILURE_STATES:
                new += await self._failure(context, run, rules, now)
            elif run.state is RunState.SUCCEEDED:
                new += await self._success(run, rules, now)
        for (_, channel), missed in skipped.items():
            new.append(_missed_delivery(channel, missed, now))
        return new

    async def _failure(
        self, context: _Context, run: RunRecord, rules: Sequence[BoundRule], now: datetime
    ) -> list[NewDelivery]:
        wanted = [rule for rule in rules if rule.kind is AlertKind.FAILURE]
        if not wanted or await self._store.has_later_attempt(run):
            return []  # a retry follows: the occurrence has not failed yet
        previous = await self._store.previous_outcome(run)
        streak_started = previous is None or previous not in FAILURE_STATES
        tail = await self._output_tail(run.id)
        new = []
        ended = run.finished_at or now
        for rule in wanted:
            if (run.job_id, rule.channel) in context.failures_alerted:
                continue  # one failure alert per job and channel in a pass
            last = await self._store.last_alerted(run.job, AlertKind.FAILURE, rule.channel)
            if last is not None and last >= ended:
                continue  # already alerted for this run (or a later one)
            # Decided on when the run ended, not on now: a run read again (the overlap
            # behind the mark) gets the same answer.
            realert = context.realert(rule.channel)
            if not failure_alert_due(rule, realert, streak_started, last, ended):
                continue
            context.failures_alerted.add((run.job_id, rule.channel))
            summary = _ending_summary(run)
            if not streak_started:
                summary += " (still failing)"
            alert = _run_alert(AlertKind.FAILURE, run, summary, now, output_tail=tail)
            new.append(NewDelivery(rule.channel, alert, f"failure:run:{run.id}:{rule.channel}"))
        return new

    async def _success(
        self, run: RunRecord, rules: Sequence[BoundRule], now: datetime
    ) -> list[NewDelivery]:
        new = []
        if any(rule.kind is AlertKind.RECOVERY for rule in rules):
            previous = await self._store.previous_outcome(run)
            if previous in FAILURE_STATES:
                for rule in rules:
                    if rule.kind is AlertKind.RECOVERY:
                        alert = _run_alert(
                            AlertKind.RECOVERY, run, f"recovered (the last run {previous})", now
                        )
                        key = f"recovery:run:{run.id}:{rule.channel}"
                        new.append(NewDelivery(rule.channel, alert, key))
        duration = _duration(run)
        for rule in rules:
            short = rule.under is not None and duration is not None and duration < rule.under
            if rule.kind is AlertKind.TOO_SHORT and short:
                assert duration is not None and rule.under is not None
                summary = (
                    f"finished in {format_duration(duration)}, under {format_duration(rule.under)}"
                )
                alert = _run_alert(AlertKind.TOO_SHORT, run, summary, now)
                key = f"too_short:run:{run.id}:{rule.channel}"
                new.append(NewDelivery(rule.channel, alert, key))
        return new

    def _late(self, run: RunRecord, rules: Sequence[BoundRule], now: datetime) -> list[NewDelivery]:
        new = []
        for rule in rules:
            if rule.kind is not AlertKind.LATE or rule.after is None:
                continue
            started = run.started_at
            lateness = (started or now) - run.scheduled_for
            if run.state is RunState.SKIPPED or lateness <= rule.after:
                continue
            if started is None and run.finished_at is not None:
                continue  # ended without starting (killed, lost): its own alerts say so
            summary = (
                f"started {format_duration(lateness)} late"
                if started is not None
                else f"not started {format_duration(lateness)} after its time"
            )
            alert = _run_alert(AlertKind.LATE, run, summary, now)
            new.append(NewDelivery(rule.channel, alert, f"late:run:{run.id}:{rule.channel}"))
        return new

    async def _active(
        self, context: _Context, runs: Sequence[RunRecord], now: datetime
    ) -> list[NewDelivery]:
        new: list[NewDelivery] = []
        medians: dict[int, timedelta | None] = {}
        for run in runs:
            rules = context.rules(run.job_id)
            if not rules:
                continue
            new += self._late(run, rules, now)
            new += self._past_deadline(context.job(run.job_id), run, rules, now)
            if run.state is not RunState.RUNNING or run.started_at is None:
                continue
            running_for = now - run.started_at
            for rule in rules:
                if rule.kind is not AlertKind.TOO_LONG:
                    continue
                limit = rule.after
                if rule.factor is not None:
                    if run.job_id not in medians:
                        medians[run.job_id] = await self._median(run.job_id)
                    median = medians[run.job_id]
                    if median is not None:
                        by_factor = median * rule.factor
                        limit = by_factor if limit is None else min(limit, by_factor)
                if limit is None or running_for <= limit:
                    continue
                summary = (
                    f"still running after {format_duration(running_for)} "
                    f"(limit {format_duration(limit)})"
                )
                alert = _run_alert(AlertKind.TOO_LONG, run, summary, now)
                key = f"too_long:run:{run.id}:{rule.channel}"
                new.append(NewDelivery(rule.channel, alert, key))
        return new

    def _past_deadline(
        self, job: JobRecord | None, run: RunRecord, rules: Sequence[BoundRule], now: datetime
    ) -> list[NewDelivery]:
        """A run still waiting for a worker past its job's ``starting_deadline``: missed
        (no worker of its pool could take it in time)."""
        deadline = job.spec.starting_deadline if job is not None else None
        if deadline is None or run.started_at is not None or now - run.scheduled_for <= deadline:
            return []
        summary = f"not started within its starting_deadline ({format_duration(deadline)})"
        alert = _run_alert(AlertKind.MISSED, run, summary, now)
        return [
            NewDelivery(rule.channel, alert, f"missed:deadline:{run.id}:{rule.channel}")
            for rule in rules
            if rule.kind is AlertKind.MISSED
        ]

    async def _median(self, job_id: int) -> timedelta | None:
        durations = await self._store.recent_durations(job_id, _SAMPLES)
        if len(durations) < _MIN_SAMPLES:
            return None
        return timedelta(seconds=statistics.median(d.total_seconds() for d in durations))

    async def _output_tail(self, run_id: int) -> str | None:
        chunks = await self._store.read_output(run_id)
        text = "".join(chunk.data for chunk in chunks if chunk.stream != "belfry")
        if not text:
            return None
        tail = "\n".join(text.rstrip("\n").splitlines()[-_TAIL_LINES:])
        return tail[-_TAIL_CHARS:]

    async def _within_stall(self, run: RunRecord) -> bool:
        """Whether a skipped occurrence fell in a stall that was alerted already."""
        start = await self._store.get_mark(_stall_mark(run.job_id))
        if start is None or run.scheduled_for < start:
            return False
        end = await self._store.get_mark(_stall_end_mark(run.job_id))
        return end is None or end < start or run.scheduled_for <= end

    # -- the dead man's switch --------------------------------------------------------------
    async def watch(self) -> int:
        """Alert the jobs no scheduler has fired for ``stall_after``, and those that fire
        again after such an alert. Returns how many deliveries it enqueued."""
        now = self._clock.now()
        overdue = await self._store.due_jobs(now - self.settings.stall_after, _BATCH)
        overdue = [job for job in overdue if not job.paused]
        stalled_ids = {job.id for job in overdue}
        context = await _Context.load_jobs(self._store, self._channels, overdue)
        new: list[NewDelivery] = []
        for job in overdue:
            assert job.next_fire_at is not None  # due_jobs only returns jobs with a cursor
            if await self._store.get_mark(_stall_mark(job.id)) is None:
                await self._store.set_mark(_stall_mark(job.id), job.next_fire_at)
            late = now - job.next_fire_at
            for rule in context.rules(job.id):
                if rule.kind is AlertKind.MISSED:
                    alert = Alert(
                        AlertKind.MISSED,
                        str(job.key),
                        f"not fired: due {_instant(job.next_fire_at)}, "
                        f"{format_duration(late)} ago (is any scheduler running?)",
                        now,
                        scheduled_for=job.next_fire_at,
                        reason="stalled",
                    )
                    key = f"stalled:{job.id}:{_instant(job.next_fire_at)}:{rule.channel}"
                    new.append(NewDelivery(rule.channel, alert, key))
        new += await self._resumed(stalled_ids, now)
        enqueued = await self._store.enqueue_deliveries(new, now)
        return len(enqueued)

    async def _resumed(self, still_stalled: set[int], now: datetime) -> list[NewDelivery]:
        """Recovery alerts for the jobs that were stalled and fire again."""
        new: list[NewDelivery] = []
        open_stalls = await self._open_stalls()
        resumed = {
            job_id: start for job_id, start in open_stalls.items() if job_id not in still_stalled
        }
        if not resumed:
            return []
        jobs = await self._store.get_jobs(list(resumed))
        context = await _Context.load_jobs(self._store, self._channels, jobs.values())
        for job_id, start in resumed.items():
            await self._store.set_mark(_stall_end_mark(job_id), now)
            job = jobs.get(job_id)
            if job is None:
                continue
            for rule in context.rules(job_id):
                if rule.kind is AlertKind.RECOVERY:
                    alert = Alert(
                        AlertKind.RECOVERY,
                        str(job.key),
                        f"fires again (had stalled from {_instant(start)})",
                        now,
                        reason="stall ended",
                    )
                    key = f"unstalled:{job_id}:{_instant(start)}:{rule.channel}"
                    new.append(NewDelivery(rule.channel, alert, key))
        return new

    async def _open_stalls(self) -> dict[int, datetime]:
        """Stalls alerted and not yet seen to end: job id -> the instant it stalled at."""
        found: dict[int, datetime] = {}
        for name, at in await self._store.list_marks("stall:"):
            job_id = int(name.removeprefix("stall:"))
            end = await self._store.get_mark(_stall_end_mark(job_id))
            if end is None or end < at:
                found[job_id] = at
        return found

    # -- delivering -------------------------------------------------------------------------
    async def deliver(self) -> int:
        """Attempt the due deliveries; returns how many were sent."""
        now = self._clock.now()
        taken = await self._store.take_deliveries(now, _SEND_LEASE, 20)
        if not taken:
            return 0
        channels = {record.name: record for record in await self._channels.list_channels()}
        results = await asyncio.gather(
            *(self._attempt(delivery, channels.get(delivery.channel)) for delivery in taken)
        )
        return sum(results)

    async def _attempt(self, delivery: DeliveryRecord, record: ChannelRecord | None) -> bool:
        now = self._clock.now()
        try:
            if record is None:
                raise DeliveryFailed(f"channel {delivery.channel} no longer exists", permanent=True)
            try:
                channel: ChannelSpec = self._channels.open(record)
            except SecretUnreadable as error:
                raise DeliveryFailed(f"channel {record.name}: {error}", permanent=True) from None
            await self._sender.send(channel, delivery.alert, delivery.id)
        except DeliveryFailed as error:
            given_up = error.permanent or delivery.attempts >= MAX_ATTEMPTS
            state = DeliveryState.FAILED if given_up else DeliveryState.PENDING
            await self._store.settle_delivery(
                delivery.id,
                state,
                self._clock.now(),
                error=str(error),
                next_attempt_at=None if given_up else now + retry_delay(delivery.attempts),
            )
            log.warning(
                "alert %s to %s, attempt %d: %s%s",
                delivery.kind,
                delivery.channel,
                delivery.attempts,
                error,
                " (given up)" if given_up else "",
                extra={"job": delivery.job, "run_id": delivery.run_id},
            )
            self._count(delivery.channel, "failed")
            return False
        await self._store.settle_delivery(delivery.id, DeliveryState.SENT, self._clock.now())
        log.info(
            "alert %s sent to %s",
            delivery.kind,
            delivery.channel,
            extra={"job": delivery.job, "run_id": delivery.run_id},
        )
        self._count(delivery.channel, "sent")
        return True

    def _count(self, channel: str, outcome: str) -> None:
        if self._on_delivery is not None:
            self._on_delivery(channel, outcome)

    async def send_test(self, name: str) -> DeliveryRecord:
        """Enqueue a test alert to the channel ``name`` and attempt it now."""
        record = await self._channels.get_channel(name)
        now = self._clock.now()
        alert = Alert(AlertKind.TEST, "belfry/test", f"a test of channel {name}", now)
        key = f"test:{name}:{_instant(now)}"
        enqueued = await self._store.enqueue_deliveries([NewDelivery(name, alert, key)], now)
        taken = [
            delivery
            for delivery in await self._store.take_deliveries(now, _SEND_LEASE, 20)
            if delivery.id in {item.id for item in enqueued}
        ]
        for delivery in taken:
            await self._attempt(delivery, record)
        found = await self._store.list_deliveries(channel=name, limit=5)
        return next(delivery for delivery in found if delivery.dedup_key == key)


class _Context:
    """The jobs, group settings and channels one pass needs, read once."""

    def __init__(
        self,
        jobs: dict[int, JobRecord],
        groups: dict[str, GroupSpec],
        realerts: dict[str, timedelta | None],
    ) -> None:
        self._jobs = jobs
        self._groups = groups
        self._realerts = realerts
        self._rules: dict[int, list[BoundRule]] = {}
        # (job id, channel) of the failure alerts enqueued in this pass.
        self.failures_alerted: set[tuple[int, str]] = set()

    @classmethod
    async def load(
        cls, store: Store, channels: ChannelCatalog, runs: Iterable[RunRecord]
    ) -> _Context:
        ids = sorted({run.job_id for run in runs})
        jobs = await store.get_jobs(ids) if ids else {}
        return await cls.load_jobs(store, channels, jobs.values())

    @classmethod
    async def load_jobs(
        cls, store: Store, channels: ChannelCatalog, jobs: Iterable[JobRecord]
    ) -> _Context:
        by_id = {job.id: job for job in jobs}
        groups: dict[str, GroupSpec] = {}
        realerts: dict[str, timedelta | None] = {}
        if by_id:
            groups = {record.name: record.spec for record in await store.list_group_settings()}
            for record in await channels.list_channels():
                try:
                    realerts[record.name] = channels.open(record).realert
                except SecretUnreadable:
                    realerts[record.name] = timedelta(hours=1)
        return cls(by_id, groups, realerts)

    def rules(self, job_id: int) -> list[BoundRule]:
        if job_id not in self._rules:
            job = self._jobs.get(job_id)
            self._rules[job_id] = (
                []
                if job is None
                else bind_rules(job.spec.notify, job.spec.alerts, self._groups.get(job.spec.group))
            )
        return self._rules[job_id]

    def job(self, job_id: int) -> JobRecord | None:
        return self._jobs.get(job_id)

    def realert(self, channel: str) -> timedelta | None:
        return self._realerts.get(channel, timedelta(hours=1))


def _duration(run: RunRecord) -> timedelta | None:
    if run.started_at is None or run.finished_at is None:
        return None
    return run.finished_at - run.started_at


def _ending_summary(run: RunRecord) -> str:
    if run.state is RunState.FAILED:
        if run.exit_code is not None:
            return f"failed with exit code {run.exit_code}"
        return f"failed: {run.reason}" if run.reason else "failed"
    if run.state is RunState.TIMED_OUT:
        return "timed out"
    return f"lost: {run.reason}" if run.reason else "lost (its worker went silent)"


def _run_alert(
    kind: AlertKind, run: RunRecord, summary: str, now: datetime, output_tail: str | None = None
) -> Alert:
    return Alert(
        kind,
        run.job,
        summary,
        now,
        run_id=run.id,
        attempt=run.attempt,
        scheduled_for=run.scheduled_for,
        state=run.state.value,
        exit_code=run.exit_code,
        reason=run.reason,
        output_tail=output_tail,
    )


def _missed_delivery(channel: str, missed: Sequence[RunRecord], now: datetime) -> NewDelivery:
    """One alert for the occurrences of one job skipped in one pass (a catch-up may skip
    many at once: one message, not one per occurrence)."""
    first = missed[0]
    if len(missed) == 1:
        alert = _run_alert(AlertKind.MISSED, first, f"skipped: {first.reason}", now)
    else:
        alert = Alert(
            AlertKind.MISSED,
            first.job,
            f"{len(missed)} occurrences skipped, {_instant(first.scheduled_for)} to "
            f"{_instant(missed[-1].scheduled_for)}: {first.reason}",
            now,
            run_id=first.id,
            scheduled_for=first.scheduled_for,
            state=RunState.SKIPPED.value,
            reason=first.reason,
            details={"runs": [run.id for run in missed][:100]},
        )
    return NewDelivery(channel, alert, f"missed:run:{first.id}:{channel}")
