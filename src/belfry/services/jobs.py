"""Job management: apply (create/update/prune in one transaction, with a diff), pause,
resume, look-ups."""

from __future__ import annotations

import builtins
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from belfry.core.alerts import GroupSpec
from belfry.core.calendars import CalendarError, CalendarSpec, compile_calendars
from belfry.core.channels import ChannelSpec
from belfry.core.drift import Drift, field_changes, job_drift, live_spec
from belfry.core.env_secrets import (
    EnvValue,
    KeepSecret,
    SealedSecret,
    SecretInput,
    secret_input_problems,
)
from belfry.core.explanations import Explanation, explain_schedule
from belfry.core.jobs import JobKey, JobSpec
from belfry.core.policies import job_gate
from belfry.core.records import CalendarRecord, JobRecord, JobWrite, Transition, Trigger
from belfry.core.states import Actor, RunState
from belfry.ports.clock import Clock
from belfry.ports.store import Store
from belfry.services.chain_checks import check_chains
from belfry.services.channels import ChannelCatalog, NamedChange
from belfry.services.secret_box import SecretBox, SecretUnreadable

__all__ = [
    "ApplyResult",
    "CalendarInUse",
    "DriftConflict",
    "JobChange",
    "JobService",
    "UnknownCalendar",
    "UnknownJob",
]


log = logging.getLogger(__name__)


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


class DriftConflict(ValueError):
    """An apply from files would overwrite changes made elsewhere (without ``force``)."""

    def __init__(self, changes: Sequence[JobChange]) -> None:
        shown = "; ".join(
            f"{change.job} ({change.drift.summary()})" for change in changes if change.drift
        )
        super().__init__(
            f"{len(changes)} job(s) changed outside files since they were last applied: "
            f"{shown}. `belfry diff -f` shows them; `belfry apply --force` overwrites them"
        )
        self.changes = list(changes)


@dataclass(frozen=True)
class JobChange:
    job: str  # group/name, or a calendar's name in ``calendar_changes``
    action: str  # create | update | delete | unchanged
    # field -> (before, after) for updates
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    # How the job differs from what files last applied (None: it does not).
    drift: Drift | None = None

    @property
    def overwrites_drift(self) -> bool:
        """The change undoes or deletes changes made outside files."""
        return self.drift is not None and self.action in {"update", "delete"}


@dataclass(frozen=True)
class ApplyResult:
    changes: list[JobChange]
    dry_run: bool
    calendar_changes: list[JobChange] = field(default_factory=list)
    channel_changes: list[NamedChange] = field(default_factory=list)
    group_changes: list[NamedChange] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for change in self.changes if change.action == action)


def _first_cursor(spec: JobSpec, now: datetime) -> datetime | None:
    return spec.parsed_schedule().next_after(now)


class JobService:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        on_change: Callable[[], None],
        secrets: SecretBox | None = None,
    ) -> None:
        """``secrets`` seals the jobs' secret env values (without it, a job with a secret
        is refused)."""
        self._store = store
        self._clock = clock
        self._on_change = on_change
        self._secrets = secrets
        self.channels = ChannelCatalog(store, clock, secrets)

    async def get(self, key: JobKey) -> JobRecord:
        job = await self._store.get_job(key.group, key.name)
        if job is None:
            raise UnknownJob(key)
        return job

    async def list(self, group: str | None = None) -> list[JobRecord]:
        return await self._store.list_jobs(group)

    async def followers(self, key: JobKey) -> builtins.list[str]:
        """The jobs that run after ``key`` (``GROUP/NAME``, sorted)."""
        return sorted(
            str(job.key)
            for job in await self._store.chained_jobs()
            if job.spec.after is not None and str(key) in job.spec.after.keys(job.spec.group)
        )

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
        channels: Sequence[ChannelSpec] = (),
        groups: Sequence[GroupSpec] = (),
        prune: bool = False,
        dry_run: bool = False,
        from_files: bool = True,
        force: bool = False,
        by: str | None = None,
    ) -> ApplyResult:
        """Make the stored jobs match ``specs`` and create or replace ``calendars``,
        ``channels`` and ``groups`` (group settings); with ``prune``, also delete the jobs
        of the same groups that ``specs`` do not mention. One transaction. Raises
        ValueError (nothing applied) for duplicates, calendars that do not resolve, and
        jobs naming a calendar or channel that neither exists nor is applied.

        ``from_files``: the specs come from the files kept in git, and become the jobs'
        applied specs; such an apply raises DriftConflict (nothing applied) rather than
        update or delete a job changed elsewhere since, unless ``force``. ``by``: who
        applies."""
        keys = [spec.key for spec in specs]
        # Counted by name: list.count per key made an apply of 10,000 jobs take 100 s.
        duplicates = {name for name, n in Counter(map(str, keys)).items() if n > 1}
        if duplicates:
            raise ValueError(f"duplicate jobs: {', '.join(sorted(duplicates))}")
        calendar_changes = await self._check_calendars(specs, calendars)
        alerting = await self.channels.plan(channels, groups)
        self.channels.check_references(alerting, specs, groups)
        now = self._clock.now()
        existing: dict[JobKey, JobRecord] = {}
        for group in sorted({spec.group for spec in specs}):
            existing.update({job.key: job for job in await self._store.list_jobs(group)})
        changes: list[JobChange] = []
        writes: list[JobWrite] = []
        for given in specs:
            current = existing.get(given.key)
            spec = self._seal_secrets(given, current)
            if current is None:
                changes.append(JobChange(str(spec.key), "create"))
                writes.append(
                    JobWrite(spec, _first_cursor(spec, now), from_files=from_files, by=by)
                )
                continue
            drift = job_drift(current) if from_files else None
            diff = field_changes(live_spec(current), spec)
            if not diff:
                changes.append(JobChange(str(spec.key), "unchanged", drift=drift))
                if drift is not None:
                    # The files now say what the job is: they own it again.
                    writes.append(
                        JobWrite(
                            spec,
                            current.next_fire_at,
                            job_id=current.id,
                            reset_cursor=False,
                            by=current.changed_by,
                        )
                    )
                continue
            changes.append(JobChange(str(spec.key), "update", diff, drift))
            timing = {"schedule", "timezone", "start", "end", "dst"}
            reset = bool(timing & diff.keys())
            writes.append(
                JobWrite(
                    spec,
                    _first_cursor(spec, now) if reset else current.next_fire_at,
                    job_id=current.id,
                    reset_cursor=reset,
                    from_files=from_files,
                    by=by,
                )
            )
        deletes: list[int] = []
        if prune:
            wanted = set(keys)
            for key, job in sorted(existing.items(), key=lambda item: str(item[0])):
                if key not in wanted:
                    drift = job_drift(job) if from_files else None
                    changes.append(JobChange(str(key), "delete", drift=drift))
                    deletes.append(job.id)
        deleted = {change.job for change in changes if change.action == "delete"}
        await check_chains(self._store, specs, deleted)
        conflicts = [change for change in changes if change.overwrites_drift]
        if conflicts and not force and not dry_run:
            raise DriftConflict(conflicts)
        written = [
            spec
            for spec, change in zip(calendars, calendar_changes, strict=True)
            if change.action != "unchanged"
        ]
        if not dry_run and (writes or deletes or written or alerting.changes_anything):
            await self._store.apply_jobs(
                writes, deletes, now, calendars=written, alerting=alerting.writes
            )
            rescheduled = [w.job_id for w in writes if w.job_id is not None and w.reset_cursor]
            await self._retire_prepared_runs(rescheduled)
            self._on_change()
        return ApplyResult(
            changes, dry_run, calendar_changes, alerting.channel_changes, alerting.group_changes
        )

    def _seal_secrets(self, spec: JobSpec, current: JobRecord | None) -> JobSpec:
        """``spec`` as it is stored: each ``{secret: VALUE}`` sealed (the stored sealed
        value kept when VALUE is the one it holds, so re-applying changes nothing), each
        ``{keep: true}`` replaced by the stored secret. Raises ValueError naming the field
        for a secret that cannot be kept, a sealed form given by a user, or a server
        without a secret key."""
        where = f"jobs[{spec.key}]"
        problems = secret_input_problems(spec.env)
        if problems:
            name, message = problems[0]
            raise ValueError(f"{where}.env.{name}: {message}")
        if all(isinstance(value, str) for value in spec.env.values()):
            return spec
        stored = current.spec.env if current is not None else {}
        env: dict[str, EnvValue] = {}
        for name, value in spec.env.items():
            old = stored.get(name)
            if isinstance(value, KeepSecret):
                if not isinstance(old, SealedSecret):
                    raise ValueError(
                        f"{where}.env.{name}: {{keep: true}} keeps the stored secret, but "
                        f"there is none (give the value as {{secret: VALUE}})"
                    )
                env[name] = old
            elif isinstance(value, SecretInput):
                if self._secrets is None:
                    raise ValueError(
                        f"{where}.env.{name}: this server has no secret key to seal secrets"
                    )
                if isinstance(old, SealedSecret) and self._secrets.matches(old, value.secret):
                    env[name] = old  # the same value: keep its token, the job is unchanged
                else:
                    env[name] = self._secrets.seal(value.secret)
            else:
                env[name] = value
        return spec.model_copy(update={"env": env})

    async def unreadable_secrets(self) -> builtins.list[str]:
        """``group/name env.NAME`` of every stored secret this server's key cannot open
        (sealed under another key: its runs would fail); logged as an error at start."""
        found = [
            f"{job.key} env.{name}"
            for job in await self._store.jobs_with_secrets()
            for name, value in job.spec.env.items()
            if isinstance(value, SealedSecret) and not self._opens(value)
        ]
        if found:
            shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
            log.error(
                "%d stored secrets cannot be decrypted with this server's secret key (%s): "
                "their runs will fail. Give every server the same secret key file, or apply "
                "the values again.",
                len(found),
                shown,
            )
        return found

    def _opens(self, sealed: SealedSecret) -> bool:
        if self._secrets is None:
            return False
        try:
            self._secrets.open(sealed)
        except SecretUnreadable:
            return False
        return True

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
        """Delete the job; ValueError while others run after it."""
        job = await self.get(key)
        await check_chains(self._store, [], [str(key)])
        await self._store.apply_jobs([], [job.id], self._clock.now())
        self._on_change()

    async def set_paused(
        self,
        key: JobKey,
        paused: bool,
        note: str | None,
        until: datetime | None = None,
        by: str | None = None,
    ) -> JobRecord:
        """Pause (until ``until``, when given: the scheduler resumes it then) or resume,
        as done ``by`` someone."""
        job = await self.get(key)
        updated = await self._store.set_paused(
            job.id, paused, note, self._clock.now(), resume_at=until, by=by
        )
        if updated is None:
            raise UnknownJob(key)
        self._on_change()
        return updated
