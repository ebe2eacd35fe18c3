"""Job management: apply (create/update/prune in one transaction, with a diff), pause,
resume, look-ups."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from belfry.core.calendars import CalendarError, CalendarSpec, compile_calendars
from belfry.core.explanations import Explanation, explain_schedule
from belfry.core.jobs import JobKey, JobSpec
from belfry.core.policies import job_gate
from belfry.core.records import CalendarRecord, JobRecord, JobWrite, Transition, Trigger
from belfry.core.states import Actor, RunState
from belfry.ports.clock import Clock
from belfry.ports.store import Store

__all__ = [
    "ApplyResult",
    "CalendarInUse",
    "JobChange",
    "JobService",
    "UnknownCalendar",
    "UnknownJob",
]


class UnknownJob(LookupError):
    def __init__(self, key: JobKey) -> None:
        super().__init__(f"no such job: {key}")
        self.key = key


class UnknownCalendar(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no such calendar: {name}")
        self.name = name


class CalendarInUse(ValueError):
    """A calendar cannot be deleted while jobs name it."""


@dataclass(frozen=True)
class JobChange:
    job: str  # group/name, or a calendar's name in ``calendar_changes``
    action: str  # create | update | delete | unchanged
    # field -> (before, after) for updates
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class ApplyResult:
    changes: list[JobChange]
    dry_run: bool
    calendar_changes: list[JobChange] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for change in self.changes if change.action == action)


def _first_cursor(spec: JobSpec, now: datetime) -> datetime | None:
    return spec.parsed_schedule().next_after(now)


class JobService:
    def __init__(self, store: Store, clock: Clock, on_change: Callable[[], None]) -> None:
        self._store = store
        self._clock = clock
        self._on_change = on_change

    async def get(self, key: JobKey) -> JobRecord:
        job = await self._store.get_job(key.group, key.name)
        if job is None:
            raise UnknownJob(key)
        return job

    async def list(self, group: str | None = None) -> list[JobRecord]:
        return await self._store.list_jobs(group)

    async def explain(self, job: JobRecord, after: datetime, count: int) -> Explanation:
        """The job's next ``count`` runs after ``after``, as its scheduler sees them: its
        own spread, bounds, DST rules and calendars, with what each skips or moves."""
        calendars = {}
        if job.spec.calendars:
            records = await self._store.list_calendars()
            try:
                calendars = compile_calendars([record.spec for record in records])
            except CalendarError:
                calendars = {}  # as the scheduler: jobs naming calendars are held
        gate, hold = job_gate(job.spec, calendars)
        schedule = job.spec.parsed_schedule()
        if hold is not None:
            explanation = explain_schedule(schedule, after=after, count=0)
            return Explanation(
                explanation.schedule,
                explanation.timezone,
                f"{explanation.description}; held: {hold}",
                [],
            )
        return explain_schedule(schedule, after=after, count=count, gate=gate)

    async def list_calendars(self) -> builtins.list[CalendarRecord]:
        return await self._store.list_calendars()

    async def get_calendar(self, name: str) -> CalendarRecord:
        for calendar in await self._store.list_calendars():
            if calendar.name == name:
                return calendar
        raise UnknownCalendar(name)

    async def delete_calendar(self, name: str) -> None:
        """Delete a calendar no job names (CalendarInUse names the jobs that do)."""
        calendars = await self._store.list_calendars()
        if name not in {calendar.name for calendar in calendars}:
            raise UnknownCalendar(name)
        users = [
            str(job.key) for job in await self._store.list_jobs() if name in job.spec.calendars
        ]
        others = [
            calendar.name
            for calendar in calendars
            if name in (*calendar.spec.include, *calendar.spec.exclude)
        ]
        if users or others:
            named = [*(f"job {user}" for user in users), *(f"calendar {o}" for o in others)]
            shown = ", ".join(named[:5]) + (f" and {len(named) - 5} more" if len(named) > 5 else "")
            raise CalendarInUse(f"calendar {name} is still used by {shown}")
        await self._store.apply_jobs([], [], self._clock.now(), delete_calendars=[name])
        self._on_change()

    async def apply(
        self,
        specs: Sequence[JobSpec],
        *,
        calendars: Sequence[CalendarSpec] = (),
        prune: bool = False,
        dry_run: bool = False,
    ) -> ApplyResult:
        """Make the stored jobs match ``specs`` and create or replace ``calendars``; with
        ``prune``, also delete the jobs of the same groups that ``specs`` do not mention.
        One transaction. Raises ValueError (nothing applied) for duplicates, calendars that
        do not resolve, and jobs naming a calendar that neither exists nor is applied."""
        keys = [spec.key for spec in specs]
        duplicates = {str(key) for key in keys if keys.count(key) > 1}
        if duplicates:
            raise ValueError(f"duplicate jobs: {', '.join(sorted(duplicates))}")
        calendar_changes = await self._check_calendars(specs, calendars)
        now = self._clock.now()
        groups = sorted({spec.group for spec in specs})
        existing: dict[JobKey, JobRecord] = {}
        for group in groups:
            existing.update({job.key: job for job in await self._store.list_jobs(group)})
        changes: list[JobChange] = []
        writes: list[JobWrite] = []
        for spec in specs:
            current = existing.get(spec.key)
            if current is None:
                changes.append(JobChange(str(spec.key), "create"))
                writes.append(JobWrite(spec, _first_cursor(spec, now)))
                continue
            before = current.spec.model_dump(mode="json")
            after = spec.model_dump(mode="json")
            diff = {
                name: (before.get(name), value)
                for name, value in after.items()
                if before.get(name) != value
            }
            if not diff:
                changes.append(JobChange(str(spec.key), "unchanged"))
                continue
            changes.append(JobChange(str(spec.key), "update", diff))
            timing = {"schedule", "timezone", "start", "end", "dst"}
            reset = bool(timing & diff.keys())
            writes.append(
                JobWrite(
                    spec,
                    _first_cursor(spec, now) if reset else current.next_fire_at,
                    job_id=current.id,
                    reset_cursor=reset,
                )
            )
        deletes: list[int] = []
        if prune:
            wanted = set(keys)
            for key, job in sorted(existing.items(), key=lambda item: str(item[0])):
                if key not in wanted:
                    changes.append(JobChange(str(key), "delete"))
                    deletes.append(job.id)
        written = [
            spec
            for spec, change in zip(calendars, calendar_changes, strict=True)
            if change.action != "unchanged"
        ]
        if not dry_run and (writes or deletes or written):
            await self._store.apply_jobs(writes, deletes, now, calendars=written)
            rescheduled = [w.job_id for w in writes if w.job_id is not None and w.reset_cursor]
            await self._retire_prepared_runs(rescheduled)
            self._on_change()
        return ApplyResult(changes, dry_run, calendar_changes)

    async def _check_calendars(
        self, specs: Sequence[JobSpec], calendars: Sequence[CalendarSpec]
    ) -> builtins.list[JobChange]:
        """The calendar part of an apply: what changes, after checking that the stored
        calendars with these replacing them still resolve and that every calendar a job
        names exists."""
        names = [calendar.name for calendar in calendars]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"duplicate calendars: {', '.join(twice)}")
        stored = {record.name: record.spec for record in await self._store.list_calendars()}
        merged = stored | {calendar.name: calendar for calendar in calendars}
        try:
            compile_calendars(list(merged.values()))
        except CalendarError as error:
            raise ValueError(str(error)) from None
        for spec in specs:
            for field_name in ("exclude", "only"):
                for index, name in enumerate(getattr(spec, field_name)):
                    if name not in merged:
                        raise ValueError(
                            f"jobs[{spec.key}].{field_name}[{index}]: unknown calendar "
                            f"{name!r} (define it under calendars:)"
                        )
        changes: builtins.list[JobChange] = []
        for calendar in calendars:
            before = stored.get(calendar.name)
            if before is None:
                changes.append(JobChange(calendar.name, "create"))
                continue
            old, new = before.to_document(), calendar.to_document()
            diff = {
                key: (old.get(key), new.get(key))
                for key in sorted(old.keys() | new.keys())
                if old.get(key) != new.get(key)
            }
            changes.append(JobChange(calendar.name, "update" if diff else "unchanged", diff))
        return changes

    async def _retire_prepared_runs(self, job_ids: Sequence[int]) -> None:
        """Runs prepared ahead from a schedule that has just changed belong to the old
        schedule: record them as skipped instead of letting them start."""
        if not job_ids:
            return
        prepared = await self._store.runs_in_states([RunState.SCHEDULED], job_ids)
        retire = [run for run in prepared if run.trigger is Trigger.SCHEDULE]
        if retire:
            await self._store.transition(
                [
                    Transition(
                        run.id,
                        RunState.SKIPPED,
                        frozenset({RunState.SCHEDULED}),
                        Actor.USER,
                        reason="schedule changed before this run started",
                    )
                    for run in retire
                ],
                self._clock.now(),
            )

    async def delete(self, key: JobKey) -> None:
        job = await self.get(key)
        await self._store.apply_jobs([], [job.id], self._clock.now())
        self._on_change()

    async def set_paused(self, key: JobKey, paused: bool, note: str | None) -> JobRecord:
        job = await self.get(key)
        updated = await self._store.set_paused(job.id, paused, note, self._clock.now())
        if updated is None:
            raise UnknownJob(key)
        self._on_change()
        return updated
