"""Backfill: run the occurrences of a past range of a job's schedule, exactly once each.

A backfill walks the job's own parsed schedule (its zone, DST rules, bounds and spread)
through its calendar gate, as ``explain`` and the scheduler do, and decides each
occurrence in ``[from, to]``: it runs, it already has a run (never a second one), or a
calendar rules it out. An occurrence whose only records are skips (paused, misfire,
overlap...) never ran, so it runs now as its next attempt.

Restarts and failover: every run of a backfill is created up front, in one transaction,
as a ``scheduled`` run with trigger ``backfill``; nothing about the backfill lives in
memory. Pacing and parallelism are enforced when runs are claimed:

- ``rate`` (runs per minute) spaces the runs' ``not_before``;
- the claim-time limit (``max_parallel``, and with ``overlap: forbid`` no start while
  another run of the job is active) is written into the waiting run's reason
  (``waiting: backfill, N at a time...``), which the run service reads when the run is
  due and clears when it is claimed. A run whose reason was replaced meanwhile (handed
  back by a stopping worker) falls back to the strictest limit: one at a time, alone.

The occurrence key ``(job, scheduled_for, attempt, target)`` is unique in the store, so
two backfills racing over the same range still make at most one run per occurrence.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from belfry.core.calendars import CalendarError, CalendarGate, compile_calendars
from belfry.core.policies import job_gate
from belfry.core.records import JobRecord, NewRun, RunRecord, Trigger
from belfry.core.schedules import format_instant
from belfry.core.states import Actor, RunState
from belfry.ports.clock import Clock
from belfry.ports.store import Store
from belfry.services.placement import fan_out, wants_workers

__all__ = [
    "MAX_OCCURRENCES",
    "BackfillError",
    "BackfillLimit",
    "BackfillOverlap",
    "BackfillPlan",
    "BackfillRequest",
    "BackfillService",
    "OccurrencePlan",
    "OccurrenceStatus",
    "backfill_limit",
]

# A larger range is refused: it is almost certainly a typo in --from or --to.
MAX_OCCURRENCES = 10_000
# Existing runs are read this many at a time.
_PAGE = 1000
# What a due backfill run's reason says while it waits (see ``backfill_limit``).
_ALONGSIDE = " alongside the job's other runs"
_MARKER = re.compile(r"^waiting: backfill, (\d+) at a time(" + re.escape(_ALONGSIDE) + r")?")


class BackfillError(ValueError):
    """A backfill request that cannot be served (bad range, too many occurrences)."""


class BackfillOverlap(StrEnum):
    """How backfill runs share the job with its other runs."""

    FORBID = "forbid"  # a backfill run starts only when no other run of the job is active
    ALLOW = "allow"  # backfill runs may run alongside the job's scheduled runs


class OccurrenceStatus(StrEnum):
    RUN = "run"
    ALREADY_RAN = "already ran"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class BackfillLimit:
    """The claim-time limit of a backfill run: at most ``max_parallel`` backfill runs of
    the job at once, and with ``alone`` none while another run of the job is active."""

    max_parallel: int = 1
    alone: bool = True

    def reason(self) -> str:
        return f"waiting: backfill, {self.max_parallel} at a time" + (
            "" if self.alone else _ALONGSIDE
        )


def backfill_limit(reason: str | None) -> BackfillLimit:
    """The limit a waiting backfill run's ``reason`` carries; the strictest one (one at a
    time, alone) when the reason no longer says (it was replaced while the run waited)."""
    found = _MARKER.match(reason or "")
    if found is None:
        return BackfillLimit()
    return BackfillLimit(max(int(found.group(1)), 1), alone=found.group(2) is None)


@dataclass(frozen=True)
class BackfillRequest:
    start: datetime  # --from, aware
    end: datetime  # --to, aware, inclusive
    dry_run: bool = False
    overlap: BackfillOverlap = BackfillOverlap.FORBID
    max_parallel: int = 1
    rate: float | None = None  # runs per minute (None: no spacing)


@dataclass(frozen=True)
class OccurrencePlan:
    scheduled_for: datetime
    status: OccurrenceStatus
    note: str | None = None
    # The attempt a new run gets (``run``), the existing run's id (``already ran``).
    attempt: int | None = None
    run_id: int | None = None


@dataclass(frozen=True)
class BackfillPlan:
    job: str
    occurrences: list[OccurrencePlan]
    dry_run: bool
    runs: list[RunRecord] = field(default_factory=list)

    def count(self, status: OccurrenceStatus) -> int:
        return sum(1 for item in self.occurrences if item.status is status)


class BackfillService:
    def __init__(self, store: Store, clock: Clock, on_runs_created: Callable[[], None]) -> None:
        self._store = store
        self._clock = clock
        self._on_runs_created = on_runs_created

    async def backfill(self, job: JobRecord, request: BackfillRequest) -> BackfillPlan:
        """Plan the backfill of ``job`` over the request's range and, unless it is a dry
        run, create its runs (one transaction). Raises BackfillError for a bad request."""
        now = self._clock.now()
        _check(request, now)
        instants = self._instants(job, request)
        existing = await self._existing(job, request)
        gate, hold = await self._gate(job)
        schedule = job.spec.parsed_schedule()
        limit = BackfillLimit(
            1 if request.overlap is BackfillOverlap.FORBID else request.max_parallel,
            alone=request.overlap is BackfillOverlap.FORBID,
        )
        spacing = timedelta(minutes=1) / request.rate if request.rate else timedelta()
        occurrences: list[OccurrencePlan] = []
        new_runs: list[NewRun] = []
        for index, instant in enumerate(instants):
            records = existing.get(instant, [])
            ran = [run for run in records if run.state is not RunState.SKIPPED]
            if ran:
                first = min(ran, key=lambda run: run.id)
                occurrences.append(
                    OccurrencePlan(
                        instant,
                        OccurrenceStatus.ALREADY_RAN,
                        f"run {first.id}: {first.state.value}",
                        run_id=first.id,
                    )
                )
                continue
            if hold is not None:
                occurrences.append(OccurrencePlan(instant, OccurrenceStatus.SKIPPED, hold))
                continue
            start_at = now + spacing * len(new_runs)
            note: str | None = None
            if gate is not None and not gate.is_open:
                following = instants[index + 1] if index + 1 < len(instants) else None
                verdict = gate.judge(instant, following or schedule.next_after(instant))
                if verdict.skipped:
                    reason = verdict.reason or "calendar"
                    occurrences.append(OccurrencePlan(instant, OccurrenceStatus.SKIPPED, reason))
                    continue
                if verdict.deferred and verdict.start_at is not None:
                    # As the scheduler would: not before the calendars allow.
                    start_at = max(start_at, verdict.start_at)
                    note = f"deferred by calendar to {format_instant(verdict.start_at)}"
            attempt = max((run.attempt for run in records), default=0) + 1
            if records:
                skipped = max(records, key=lambda run: run.attempt)
                note = _join(note, f"was skipped: {skipped.reason or 'no reason'}")
            occurrences.append(OccurrencePlan(instant, OccurrenceStatus.RUN, note, attempt))
            new_runs.append(
                NewRun(
                    job.id,
                    instant,
                    attempt=attempt,
                    trigger=Trigger.BACKFILL,
                    reason=limit.reason(),
                    not_before=start_at,
                )
            )
        plan = BackfillPlan(str(job.key), occurrences, request.dry_run)
        if request.dry_run or not new_runs:
            return plan
        workers = await self._store.list_workers() if wants_workers(job) else []
        wanted = fan_out(job, new_runs, workers, now)
        created = await self._store.create_runs(wanted, Actor.USER, now)
        if created:
            self._on_runs_created()
        return replace(plan, runs=created)

    def _instants(self, job: JobRecord, request: BackfillRequest) -> list[datetime]:
        schedule = job.spec.parsed_schedule()
        instants: list[datetime] = []
        # next_after is strict: start just before --from so an occurrence at it counts.
        upcoming = schedule.next_after(request.start - timedelta(microseconds=1))
        while upcoming is not None and upcoming <= request.end:
            if len(instants) == MAX_OCCURRENCES:
                raise BackfillError(
                    f"--from/--to: the range holds more than {MAX_OCCURRENCES} occurrences "
                    f"of {job.key}; backfill a shorter range"
                )
            instants.append(upcoming)
            upcoming = schedule.next_after(upcoming)
        return instants

    async def _existing(
        self, job: JobRecord, request: BackfillRequest
    ) -> dict[datetime, list[RunRecord]]:
        """The job's runs (and skips) of occurrences in the range, by occurrence."""
        found: dict[datetime, list[RunRecord]] = {}
        before: int | None = None
        while True:
            page = await self._store.list_runs(job_id=job.id, limit=_PAGE, before_id=before)
            for run in page:
                if request.start <= run.scheduled_for <= request.end:
                    found.setdefault(run.scheduled_for, []).append(run)
            if len(page) < _PAGE:
                return found
            before = page[-1].id

    async def _gate(self, job: JobRecord) -> tuple[CalendarGate | None, str | None]:
        """The job's calendar gate, or the reason to hold it, as the scheduler sees them."""
        calendars = {}
        if job.spec.calendars:
            records = await self._store.list_calendars()
            try:
                calendars = compile_calendars([record.spec for record in records])
            except CalendarError:
                calendars = {}  # as the scheduler: jobs naming calendars are held
        return job_gate(job.spec, calendars)


def _check(request: BackfillRequest, now: datetime) -> None:
    if request.start.tzinfo is None or request.end.tzinfo is None:
        raise BackfillError("--from/--to: give a time zone, e.g. 2027-01-01T10:00:00Z")
    if request.start > request.end:
        raise BackfillError("--from/--to: --from is after --to")
    if request.end > now:
        raise BackfillError(
            f"--to: {format_instant(request.end)} is in the future (now is "
            f"{format_instant(now)}); backfill covers past occurrences only"
        )
    if request.max_parallel < 1:
        raise BackfillError("--max-parallel: must be at least 1")
    if request.overlap is BackfillOverlap.FORBID and request.max_parallel > 1:
        raise BackfillError("--max-parallel: more than 1 at a time needs --overlap allow")
    if request.rate is not None and request.rate <= 0:
        raise BackfillError("--rate: must be more than 0 runs per minute")


def _join(first: str | None, second: str) -> str:
    return second if first is None else f"{first}; {second}"
