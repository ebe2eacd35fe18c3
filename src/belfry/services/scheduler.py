"""The scheduler: turns every due occurrence into a run or a recorded skip, exactly once.

Each job's cursor (its first unhandled occurrence) lives in the store. A pass reads only
the jobs whose cursor is due (an index on the cursor), plans their occurrences with the
pure policies of ``belfry.core``, and moves each cursor with a compare-and-set that inserts
the runs in the same transaction; the occurrence key makes a second run impossible even if
two schedulers race. Between passes it sleeps until the next cursor, or until woken.
An occurrence of a ``target: all`` job becomes one run per live worker that can run it
(``belfry.services.placement``). An occurrence of a job in maintenance is recorded as
skipped (``maintenance: NOTE``); a pause with a resume time ends here, when it is due.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta

from belfry.core.calendars import Calendar, CalendarError, compile_calendars
from belfry.core.maintenance import MaintenanceWindow, covering, maintenance_reason
from belfry.core.policies import jitter_offset, job_gate, plan_occurrences
from belfry.core.records import (
    SERVER_ACTOR,
    CalendarRecord,
    Fence,
    JobAdvance,
    JobRecord,
    NewRun,
    WorkerRecord,
)
from belfry.core.schedules import Schedule
from belfry.core.states import RunState
from belfry.ports.clock import Clock
from belfry.ports.store import Store
from belfry.services.audit import AuditLog
from belfry.services.metrics import Metrics
from belfry.services.placement import fan_out, wants_workers
from belfry.services.runs import PREPARE_AHEAD
from belfry.services.wakeups import Wakeup

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)

# Seconds a fenced-out scheduler waits before looking again (it is about to be stopped).
FENCED_PAUSE = 0.5
# Parsed schedules kept between passes (a parse costs ~0.1 ms; a few KB each).
_SCHEDULES_KEPT = 4096


class Scheduler:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        on_runs_created: Callable[[], None],
        on_runs_skipped: Callable[[], None] | None = None,
        horizon: timedelta = PREPARE_AHEAD,
        batch: int = 500,
        idle_recheck: float = 30.0,
        metrics: Metrics | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        # Records the pauses that end by themselves, as done by Belfry itself.
        self._audit = audit or AuditLog(store, clock)
        # Counts the skips and fires of the passes this server makes (``/metrics``).
        self._metrics = metrics or Metrics()
        self._on_runs_created = on_runs_created
        # Told when occurrences were recorded skipped (alerts about misses look at once).
        self._on_runs_skipped = on_runs_skipped
        # Runs are created this far ahead so the worker can start them exactly on time.
        self._horizon = horizon
        # The leader's fencing token when servers share a database (None: one server).
        self.fence: Fence | None = None
        self._batch = batch
        # Upper bound on a sleep: a safety net for changes made by another process.
        self._idle_recheck = idle_recheck
        self._wakeup = Wakeup()
        # Parsed schedules, the most recently used kept: bounded, so that 100,000 jobs
        # do not each keep one in memory between their hourly fires.
        self._schedules: OrderedDict[tuple[object, ...], Schedule] = OrderedDict()
        # Compiled calendars, kept while the stored definitions are unchanged.
        self._calendar_source: tuple[str, ...] = ()
        self._calendars: dict[str, Calendar] = {}

    def wake(self) -> None:
        """A job changed: re-read the cursors now instead of at the planned time."""
        self._wakeup.ring()

    async def run_forever(self) -> None:
        while True:
            try:
                delay = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler pass failed; retrying in 1s")
                delay = 1.0
            await self._wakeup.wait(delay)

    async def run_once(self) -> float:
        """Handle every due occurrence; return the seconds until the next one is due."""
        resume = await self._resume_due()
        while True:
            now = self._clock.now()
            jobs = await self._store.due_jobs(now + self._horizon, self._batch)
            if jobs:
                calendars: dict[str, Calendar] = {}
                if any(job.spec.exclude or job.spec.only for job in jobs):
                    calendars = self._compiled(await self._store.list_calendars())
                # A small table, read once per pass: maintenance may begin at any time.
                windows = await self._store.list_maintenance()
                # target: all makes a run per live worker: read them once per pass.
                workers: list[WorkerRecord] = []
                if any(wants_workers(job) for job in jobs):
                    workers = await self._store.list_workers()
                advances = [self._advance(job, now, calendars, workers, windows) for job in jobs]
                applied = await self._store.advance_jobs(advances, now, self.fence)
                if applied == 0 and self.fence is not None:
                    # Fenced out: another server leads now. Stop; the election says so soon.
                    return FENCED_PAUSE
                await self._count(advances, applied, now)
                made = {run.state for advance in advances for run in advance.runs}
                if RunState.SCHEDULED in made:
                    self._on_runs_created()
                if RunState.SKIPPED in made and self._on_runs_skipped is not None:
                    self._on_runs_skipped()
            if len(jobs) < self._batch:
                break
        delay = self._idle_recheck
        upcoming = await self._store.next_cursor()
        if upcoming is not None:
            seconds = (upcoming - self._horizon - self._clock.now()).total_seconds()
            delay = min(max(seconds, 0.0), delay)
        if resume is not None:
            delay = min(max((resume - self._clock.now()).total_seconds(), 0.0), delay)
        return delay

    async def _resume_due(self) -> datetime | None:
        """Resume the paused jobs whose resume time has come (read first: writing every
        pass would cost a write transaction per pass for nothing); return the next time a
        pause ends (None: no pause ends by itself)."""
        now = self._clock.now()
        due = await self._store.next_resume_at()
        if due is None or due > now:
            return due
        for job in await self._store.resume_due_jobs(now):
            log.info("job %s resumed: its pause ended", job.key)
            await self._audit.record(
                SERVER_ACTOR,
                "job.resume",
                group=job.spec.group,
                target=str(job.key),
                after={"reason": "pause ended"},
            )
        return await self._store.next_resume_at()

    async def _count(self, advances: list[JobAdvance], applied: int, now: datetime) -> None:
        """Count the skips and fires of the advances that applied."""
        if applied < len(advances):
            if applied == 0:
                return
            # Some cursors moved meanwhile (a concurrent apply changed the job): count the
            # advances whose cursor is where this pass put it. Rare, so read only then.
            current = await self._store.get_jobs([advance.job_id for advance in advances])
            advances = [
                advance
                for advance in advances
                if advance.job_id in current
                and current[advance.job_id].next_fire_at == advance.next_cursor
            ]
        self._metrics.planned((run for advance in advances for run in advance.runs), now)

    def _schedule(self, job: JobRecord) -> Schedule:
        spec = job.spec
        # Everything the parsed schedule depends on: H is seeded by the job's name.
        written = tuple(spec.schedule) if isinstance(spec.schedule, list) else spec.schedule
        key = (written, spec.timezone, str(spec.key), spec.dst, spec.start, spec.end)
        schedule = self._schedules.get(key)
        if schedule is None:
            schedule = self._schedules[key] = spec.parsed_schedule()
            if len(self._schedules) > _SCHEDULES_KEPT:
                self._schedules.popitem(last=False)
        else:
            self._schedules.move_to_end(key)
        return schedule

    def _compiled(self, records: list[CalendarRecord]) -> dict[str, Calendar]:
        source = tuple(record.spec.model_dump_json() for record in records)
        if source != self._calendar_source:
            try:
                self._calendars = compile_calendars([record.spec for record in records])
            except CalendarError:
                # apply checks calendars before storing them, so this is a race with a
                # concurrent apply: jobs naming a calendar are held until it resolves.
                log.exception("stored calendars do not resolve")
                self._calendars = {}
            self._calendar_source = source
        return self._calendars

    def _advance(
        self,
        job: JobRecord,
        now: datetime,
        calendars: dict[str, Calendar],
        workers: list[WorkerRecord],
        windows: list[MaintenanceWindow],
    ) -> JobAdvance:
        assert job.next_fire_at is not None  # due_jobs only returns jobs with a cursor
        spec = job.spec
        gate, hold = job_gate(spec, calendars)
        window = covering(windows, spec.group)
        if hold is None and window is not None:
            # A defer job's skips are marked: ending the maintenance turns them into a run.
            hold = maintenance_reason(window, deferred=spec.on_maintenance == "defer")
        schedule = self._schedule(job)
        plan = plan_occurrences(
            schedule,
            job.next_fire_at,
            now,
            horizon=self._horizon,
            paused=job.paused,
            misfire=spec.misfire,
            misfire_max=spec.misfire_max,
            starting_deadline=spec.starting_deadline,
            gate=gate,
            hold=hold,
        )
        runs = [
            NewRun(job.id, instant, not_before=self._start_at(job, schedule, instant))
            for instant in plan.fire
        ]
        runs += [
            NewRun(
                job.id, deferral.scheduled_for, reason=deferral.note, not_before=deferral.start_at
            )
            for deferral in plan.defer
        ]
        runs += [
            NewRun(
                job.id,
                skip.scheduled_for,
                state=RunState.SKIPPED,
                reason=skip.reason,
                not_before=skip.scheduled_for,
            )
            for skip in plan.skip
        ]
        runs.sort(key=lambda run: run.scheduled_for)
        # A skip stays one record per occurrence; a run to start may be one per worker.
        runs = fan_out(job, runs, workers, now)
        return JobAdvance(job.id, job.next_fire_at, plan.next_cursor, runs)

    @staticmethod
    def _start_at(job: JobRecord, schedule: Schedule, instant: datetime) -> datetime:
        """The instant itself, or later by the job's deterministic jitter."""
        if job.spec.jitter is None:
            return instant
        following = schedule.next_after(instant)
        return instant + jitter_offset(str(job.key), instant, job.spec.jitter, following)
