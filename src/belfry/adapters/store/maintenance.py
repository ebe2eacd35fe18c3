"""The maintenance part of the SQL store: windows, pauses that end by themselves, drains."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from belfry.adapters.store.connections import SqlConnections
from belfry.adapters.store.schema import jobs, maintenance, runs, workers
from belfry.core.maintenance import DEFERRED_MARK, EVERYTHING, MaintenanceWindow, covering
from belfry.core.records import SERVER_ACTOR, JobRecord, NewRun, RunRecord, WorkerRecord
from belfry.core.states import Actor, RunState
from belfry.ports.maintenance import EndedMaintenance, OwedRuns

__all__ = ["MaintenanceStore"]


class MaintenanceStore(SqlConnections):
    # Rows and run inserts are the main store's business (``SqlStore`` provides these).
    def _job_record(self, row: Row[Any]) -> JobRecord:
        raise NotImplementedError

    def _worker_record(self, row: Row[Any]) -> WorkerRecord:
        raise NotImplementedError

    async def _insert_runs(
        self,
        connection: AsyncConnection,
        new_runs: Sequence[NewRun],
        names: Mapping[int, str],
        actor: Actor,
        now: datetime,
    ) -> list[RunRecord]:
        raise NotImplementedError

    async def list_maintenance(self) -> list[MaintenanceWindow]:
        async with self._read() as connection:
            return await _windows(connection)

    async def start_maintenance(
        self, window: MaintenanceWindow
    ) -> tuple[MaintenanceWindow | None, MaintenanceWindow]:
        async with self._write() as connection:
            row = (
                await connection.execute(
                    select(maintenance).where(maintenance.c.scope == window.scope)
                )
            ).first()
            if row is None:
                inserted = (
                    await connection.execute(
                        self._insert(maintenance)
                        .values(
                            scope=window.scope,
                            note=window.note,
                            started_at=window.started_at,
                            started_by=window.started_by,
                        )
                        .on_conflict_do_nothing()
                        .returning(*maintenance.c)
                    )
                ).first()
                if inserted is not None:
                    return None, _window(inserted)
                # A concurrent start took the scope first: take its window, with our note.
                row = (
                    await connection.execute(
                        select(maintenance).where(maintenance.c.scope == window.scope)
                    )
                ).one()
            before = _window(row)
            after = (
                await connection.execute(
                    update(maintenance)
                    .where(maintenance.c.scope == window.scope)
                    .values(note=window.note)
                    .returning(*maintenance.c)
                )
            ).one()
            return before, _window(after)

    async def end_maintenance(
        self, scope: str, now: datetime, owed: OwedRuns
    ) -> EndedMaintenance | None:
        async with self._write() as connection:
            row = (
                await connection.execute(
                    delete(maintenance)
                    .where(maintenance.c.scope == scope)
                    .returning(*maintenance.c)
                )
            ).first()
            if row is None:
                return None
            ended = _window(row)
            remaining = await _windows(connection)
            statement = select(jobs).where(jobs.c.paused.is_(False))
            if scope != EVERYTHING:
                statement = statement.where(jobs.c.group == scope)
            # on_maintenance lives in the spec's JSON: few jobs, read them and look.
            candidates = [
                job
                for job in map(self._job_record, await connection.execute(statement))
                if job.spec.on_maintenance == "defer"
                and covering(remaining, job.spec.group) is None
            ]
            if not candidates:
                return EndedMaintenance(ended)
            counted = await connection.execute(
                select(runs.c.job_id, func.count())
                .where(
                    runs.c.job_id.in_([job.id for job in candidates]),
                    runs.c.state == RunState.SKIPPED.value,
                    runs.c.reason.endswith(DEFERRED_MARK, autoescape=True),
                    # A run made before the window and skipped in it counts too.
                    runs.c.finished_at >= ended.started_at,
                )
                .group_by(runs.c.job_id)
            )
            skipped: dict[int, int] = {row[0]: row[1] for row in counted}
            new_runs = [
                run
                for job in candidates
                if skipped.get(job.id)
                for run in owed(job, skipped[job.id])
            ]
            names = {job.id: str(job.key) for job in candidates}
            made = await self._insert_runs(connection, new_runs, names, Actor.SCHEDULER, now)
            return EndedMaintenance(ended, made)

    async def resume_due_jobs(self, now: datetime) -> list[JobRecord]:
        async with self._write() as connection:
            result = await connection.execute(
                update(jobs)
                .where(jobs.c.paused.is_(True), jobs.c.resume_at <= now)
                .values(
                    paused=False,
                    pause_note=None,
                    resume_at=None,
                    updated_at=now,
                    changed_by=SERVER_ACTOR,
                    changed_at=now,
                )
                .returning(*jobs.c)
            )
            return [self._job_record(row) for row in result]

    async def next_resume_at(self) -> datetime | None:
        async with self._read() as connection:
            value: datetime | None = await connection.scalar(
                select(func.min(jobs.c.resume_at)).where(jobs.c.paused.is_(True))
            )
        return value

    async def set_drain(self, name: str, drain: bool) -> WorkerRecord | None:
        async with self._write() as connection:
            row = (
                await connection.execute(
                    update(workers)
                    .where(workers.c.name == name)
                    .values(drain_requested=drain)
                    .returning(*workers.c)
                )
            ).first()
        return self._worker_record(row) if row else None


async def _windows(connection: AsyncConnection) -> list[MaintenanceWindow]:
    # '*' sorts before any group name ([a-z0-9-_.]).
    result = await connection.execute(select(maintenance).order_by(maintenance.c.scope))
    return [_window(row) for row in result]


def _window(row: Row[Any]) -> MaintenanceWindow:
    data = row._mapping
    return MaintenanceWindow(
        scope=data["scope"],
        note=data["note"],
        started_at=data["started_at"],
        started_by=data["started_by"],
    )
