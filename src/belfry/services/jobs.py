"""Job management: apply (create/update/prune in one transaction, with a diff), pause,
resume, look-ups."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from belfry.core.jobs import JobKey, JobSpec
from belfry.core.records import JobRecord, JobWrite, Transition, Trigger
from belfry.core.states import Actor, RunState
from belfry.ports.clock import Clock
from belfry.ports.store import Store

__all__ = ["ApplyResult", "JobChange", "JobService", "UnknownJob"]


class UnknownJob(LookupError):
    def __init__(self, key: JobKey) -> None:
        super().__init__(f"no such job: {key}")
        self.key = key


@dataclass(frozen=True)
class JobChange:
    job: str
    action: str  # create | update | delete | unchanged
    # field -> (before, after) for updates
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class ApplyResult:
    changes: list[JobChange]
    dry_run: bool

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

    async def apply(
        self, specs: Sequence[JobSpec], *, prune: bool = False, dry_run: bool = False
    ) -> ApplyResult:
        """Make the stored jobs match ``specs``; with ``prune``, also delete the jobs of
        the same groups that ``specs`` do not mention. One transaction."""
        keys = [spec.key for spec in specs]
        duplicates = {str(key) for key in keys if keys.count(key) > 1}
        if duplicates:
            raise ValueError(f"duplicate jobs: {', '.join(sorted(duplicates))}")
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
        if not dry_run and (writes or deletes):
            await self._store.apply_jobs(writes, deletes, now)
            rescheduled = [w.job_id for w in writes if w.job_id is not None and w.reset_cursor]
            await self._retire_prepared_runs(rescheduled)
            self._on_change()
        return ApplyResult(changes, dry_run)

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
