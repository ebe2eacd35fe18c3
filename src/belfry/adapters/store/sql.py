"""The Store port on SQLAlchemy Core (async), for SQLite and PostgreSQL alike.

Correctness rests on the database, not on the caller: occurrence keys are unique, cursor
moves and state changes are compare-and-set updates, and every method is one transaction.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Row,
    Select,
    Text,
    and_,
    bindparam,
    case,
    column,
    delete,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from belfry.adapters.store.accounts import AccountStore
from belfry.adapters.store.chains import ChainStore
from belfry.adapters.store.connections import WRITE_OPTION
from belfry.adapters.store.job_rows import job_record
from belfry.adapters.store.job_search import JobSearch
from belfry.adapters.store.maintenance import MaintenanceStore
from belfry.adapters.store.newest_run import newest_run
from belfry.adapters.store.notifications import NotificationStore
from belfry.adapters.store.run_rows import run_record
from belfry.adapters.store.schema import (
    UtcDateTime,
    calendars,
    jobs,
    leadership,
    nodes,
    output_chunks,
    run_events,
    runs,
    workers,
)
from belfry.adapters.store.stats import StatsStore
from belfry.core.calendars import CalendarSpec
from belfry.core.deliveries import AlertingWrites
from belfry.core.jobs import JobSpec
from belfry.core.records import (
    CalendarRecord,
    Fence,
    JobAdvance,
    JobRecord,
    JobWrite,
    Leadership,
    NewRun,
    NodeRecord,
    OutputChunk,
    RunEvent,
    RunRecord,
    Transition,
    Trigger,
    WorkerRecord,
)
from belfry.core.states import (
    ACTIVE_STATES,
    FINAL_STATES,
    Actor,
    RunState,
    check_transition,
)

__all__ = ["WRITE_OPTION", "SqlStore"]

_FINAL = sorted(state.value for state in FINAL_STATES)
# Jobs created or deleted by one apply past which the jobs table is vacuumed and analyzed.
_VACUUM_AFTER = 1000
_ACTIVE = sorted(state.value for state in ACTIVE_STATES)
_OCCURRENCE = ("job_id", "scheduled_for", "attempt", "target")
# Rows per multi-row UPDATE: 6 parameters each stays far below SQLite's 32766 and
# PostgreSQL's 65535 bind parameter limits.
_ROWS = 1000
# The leadership row of the scheduler (the only one today).
_SCHEDULER = "scheduler"
_T = TypeVar("_T")
KILL_REASON = "kill requested"


def _state_names(states: Iterable[RunState]) -> list[str]:
    return sorted({RunState(state).value for state in states})


def _leadership(row: Row[Any, Any, Any, Any]) -> Leadership:
    data = row._mapping
    now = data["now"]
    if isinstance(now, str):  # SQLite hands back the bound parameter as stored text
        now = datetime.fromisoformat(now)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return Leadership(data["holder"], data["epoch"], data["expires_at"], now.astimezone(UTC))


def _calendar(row: Row[Any]) -> CalendarRecord:
    data = row._mapping
    return CalendarRecord(
        spec=CalendarSpec.model_validate_json(data["spec"]),
        created_at=data["created_at"],
        updated_at=data["updated_at"],
    )


def _worker(row: Row[Any]) -> WorkerRecord:
    data = row._mapping
    return WorkerRecord(
        name=data["name"],
        host=data["host"],
        pools=list(json.loads(data["pools"])),
        tags=dict(json.loads(data["tags"])),
        slots=data["slots"],
        cpu=data["cpu"],
        memory_mb=data["memory_mb"],
        version=data["version"],
        # A drain asked for by a person holds whatever the worker's heartbeat says.
        state="draining"
        if data["drain_requested"] and data["state"] == "active"
        else data["state"],
        first_seen=data["first_seen"],
        last_seen=data["last_seen"],
    )


def _event(row: Row[Any]) -> RunEvent:
    data = row._mapping
    return RunEvent(
        run_id=data["run_id"],
        at=data["at"],
        state=RunState(data["state"]),
        actor=Actor(data["actor"]),
        host=data["host"],
        pid=data["pid"],
        exit_code=data["exit_code"],
        reason=data["reason"] or None,
    )


def _after_jobs(spec: JobSpec) -> str | None:
    if spec.after is None:
        return None
    return " " + " ".join(spec.after.keys(spec.group)) + " "


def _job_values(write: JobWrite, now: datetime) -> dict[str, Any]:
    spec = write.spec.model_dump_json()
    values = {
        "group": write.spec.group,
        "name": write.spec.name,
        "spec": spec,
        "paused": write.spec.paused,
        "after_jobs": _after_jobs(write.spec),
        "keep_runs": write.spec.retention.keep_runs,
        "keep_days": write.spec.retention.keep_days,
        "changed_by": write.by,
        "changed_at": now,
        "updated_at": now,
    }
    if write.from_files:
        values["applied_spec"] = spec
    return values


class SqlStore(
    AccountStore, NotificationStore, StatsStore, MaintenanceStore, JobSearch, ChainStore
):
    """The store on a SQLAlchemy async engine (built by ``open_store``)."""

    def _job_record(self, row: Row[Any]) -> JobRecord:
        return job_record(row)

    def _worker_record(self, row: Row[Any]) -> WorkerRecord:
        return _worker(row)

    async def _job_names(
        self, connection: AsyncConnection, job_ids: Iterable[int]
    ) -> dict[int, str]:
        wanted = set(job_ids)
        if not wanted:
            return {}
        result = await connection.execute(
            select(jobs.c.id, jobs.c.group, jobs.c.name).where(jobs.c.id.in_(wanted))
        )
        names = {row.id: f"{row.group}/{row.name}" for row in result}
        missing = sorted(wanted - names.keys())
        if missing:
            raise ValueError(f"no job with id {missing[0]}")
        return names

    async def _insert_runs(
        self,
        connection: AsyncConnection,
        new_runs: Sequence[NewRun],
        names: Mapping[int, str],
        actor: Actor,
        now: datetime,
    ) -> list[RunRecord]:
        """Insert runs whose occurrence key is new, each with its creation event."""
        if not new_runs:
            return []
        rows = []
        for run in new_runs:
            check_transition(None, run.state)
            rows.append(
                {
                    "job_id": run.job_id,
                    "job": names[run.job_id],
                    "scheduled_for": run.scheduled_for,
                    "attempt": run.attempt,
                    "target": run.target,
                    "trigger": Trigger(run.trigger).value,
                    "state": run.state.value,
                    "reason": run.reason,
                    "not_before": run.not_before or run.scheduled_for,
                    "kill_requested": False,
                    "created_at": now,
                    # A run born skipped is already over.
                    "finished_at": now if run.state in FINAL_STATES else None,
                }
            )
        statement = (
            self._insert(runs)
            .on_conflict_do_nothing(index_elements=[runs.c[name] for name in _OCCURRENCE])
            .returning(*runs.c)
        )
        result = await connection.execute(statement, rows)
        inserted = sorted((run_record(row) for row in result), key=lambda run: run.id)
        if inserted:
            await connection.execute(
                run_events.insert(),
                [
                    {
                        "run_id": run.id,
                        "at": now,
                        "state": run.state.value,
                        "actor": actor.value,
                        "host": None,
                        "pid": None,
                        "exit_code": None,
                        "reason": run.reason,
                    }
                    for run in inserted
                ],
            )
        return inserted

    # -- jobs -------------------------------------------------------------------------------
    async def apply_jobs(
        self,
        writes: Sequence[JobWrite],
        delete_ids: Sequence[int],
        now: datetime,
        calendars: Sequence[CalendarSpec] = (),
        delete_calendars: Sequence[str] = (),
        alerting: AlertingWrites | None = None,
    ) -> None:
        keys = [(write.spec.group, write.spec.name) for write in writes]
        if len(set(keys)) != len(keys):
            duplicate = next(key for key in keys if keys.count(key) > 1)
            raise ValueError(f"job {duplicate[0]}/{duplicate[1]} is written twice")
        names = [calendar.name for calendar in calendars]
        if len(set(names)) != len(names):
            duplicate_name = next(name for name in names if names.count(name) > 1)
            raise ValueError(f"calendar {duplicate_name} is written twice")
        creates = [write for write in writes if write.job_id is None]
        replaces = [write for write in writes if write.job_id is not None]
        async with self._write() as connection:
            if delete_calendars or calendars:
                await self._write_calendars(connection, calendars, delete_calendars, now)
            if alerting is not None:
                await self._write_alerting(connection, alerting, now)
            # Deletes first, so one apply can delete a job and create one of the same name.
            if delete_ids:
                await connection.execute(delete(jobs).where(jobs.c.id.in_(set(delete_ids))))
            if replaces:
                await self._replace_jobs(connection, replaces, now)
            if creates:
                await self._create_jobs(connection, creates, now)
        if self.kind == "postgresql" and len(creates) + len(delete_ids) >= _VACUUM_AFTER:
            # A big load changes the table at once. Until autovacuum comes by, PostgreSQL
            # lacks statistics (it scanned 100,000 jobs for the few chained ones) and a
            # visibility map (the job list's count read the whole table, not its index).
            async with self._read() as connection:  # autocommit: VACUUM runs outside BEGIN
                await connection.execute(text("VACUUM ANALYZE jobs"))

    async def _write_calendars(
        self,
        connection: AsyncConnection,
        specs: Sequence[CalendarSpec],
        delete_names: Sequence[str],
        now: datetime,
    ) -> None:
        await self._write_named(
            connection,
            calendars,
            {spec.name: {"spec": spec.model_dump_json()} for spec in specs},
            delete_names,
            now,
        )

    async def list_calendars(self) -> list[CalendarRecord]:
        statement = select(calendars).order_by(calendars.c.name)
        async with self._read() as connection:
            return [_calendar(row) for row in await connection.execute(statement)]

    async def _replace_jobs(
        self, connection: AsyncConnection, writes: Sequence[JobWrite], now: datetime
    ) -> None:
        ids = {write.job_id for write in writes if write.job_id is not None}
        result = await connection.execute(
            select(jobs.c.id, jobs.c.group, jobs.c.name)
            .where(jobs.c.id.in_(ids))
            .with_for_update()  # held until commit, so a concurrent delete cannot interleave
        )
        current = {row.id: f"{row.group}/{row.name}" for row in result}
        missing = sorted(job_id for job_id in ids if job_id not in current)
        if missing:
            raise ValueError(f"no job with id {missing[0]}")
        # One executemany per statement shape: cursor kept or reset, pause note kept or
        # not, applied by files or not.
        shapes: dict[tuple[bool, bool, bool], list[dict[str, Any]]] = {}
        for write in writes:
            changes = _job_values(write, now) | {"b_id": write.job_id}
            if write.reset_cursor:
                changes["next_fire_at"] = write.next_fire_at
            if not write.spec.paused:
                changes["pause_note"] = None
                changes["resume_at"] = None
            shape = (write.reset_cursor, write.spec.paused, write.from_files)
            shapes.setdefault(shape, []).append(changes)
        try:
            for params in shapes.values():
                columns = [name for name in params[0] if name != "b_id"]
                statement = (
                    update(jobs)
                    .where(jobs.c.id == bindparam("b_id"))
                    .values({name: bindparam(name) for name in columns})
                )
                await connection.execute(statement, params)
        except IntegrityError as error:
            raise ValueError("a replaced job takes the name of another job") from error
        # A run shows its job's name: follow a rename (rare, so only then).
        renamed = [
            {"b_job_id": job_id, "b_job": str(write.spec.key)}
            for write in writes
            if (job_id := write.job_id) is not None and current[job_id] != str(write.spec.key)
        ]
        if renamed:
            await connection.execute(
                update(runs)
                .where(runs.c.job_id == bindparam("b_job_id"))
                .values(job=bindparam("b_job")),
                renamed,
            )

    async def _create_jobs(
        self, connection: AsyncConnection, writes: Sequence[JobWrite], now: datetime
    ) -> None:
        names = {write.spec.name for write in writes}
        result = await connection.execute(
            select(jobs.c.group, jobs.c.name).where(jobs.c.name.in_(names))
        )
        existing = {(row.group, row.name) for row in result}
        for write in writes:
            if (write.spec.group, write.spec.name) in existing:
                raise ValueError(f"job {write.spec.group}/{write.spec.name} already exists")
        rows = [
            {"applied_spec": None}
            | _job_values(write, now)
            | {"pause_note": None, "next_fire_at": write.next_fire_at, "created_at": now}
            for write in writes
        ]
        try:
            await connection.execute(jobs.insert(), rows)
        except IntegrityError as error:
            # Lost a race with a concurrent create of the same name.
            raise ValueError("a created job already exists") from error

    async def list_jobs(self, group: str | None = None) -> list[JobRecord]:
        statement = select(jobs).order_by(jobs.c.group, jobs.c.name)
        if group is not None:
            statement = statement.where(jobs.c.group == group)
        async with self._read() as connection:
            return [job_record(row) for row in await connection.execute(statement)]

    async def jobs_with_secrets(self) -> list[JobRecord]:
        # A sealed secret is stored as {"encrypted": ..., "digest": ...}: the text search
        # keeps the other jobs' specs unparsed (a start-up with 100,000 jobs read them all).
        statement = (
            select(jobs)
            .where(jobs.c.spec.contains('"encrypted":', autoescape=True))
            .order_by(jobs.c.group, jobs.c.name)
        )
        async with self._read() as connection:
            return [job_record(row) for row in await connection.execute(statement)]

    async def get_job(self, group: str, name: str) -> JobRecord | None:
        statement = select(jobs).where(jobs.c.group == group, jobs.c.name == name)
        async with self._read() as connection:
            row = (await connection.execute(statement)).first()
        return job_record(row) if row else None

    async def get_jobs(self, job_ids: Sequence[int]) -> dict[int, JobRecord]:
        if not job_ids:
            return {}
        statement = select(jobs).where(jobs.c.id.in_(set(job_ids)))
        async with self._read() as connection:
            return {job.id: job for job in map(job_record, await connection.execute(statement))}

    async def set_paused(
        self,
        job_id: int,
        paused: bool,
        note: str | None,
        now: datetime,
        resume_at: datetime | None = None,
        by: str | None = None,
    ) -> JobRecord | None:
        statement = (
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(
                paused=paused,
                pause_note=note,
                resume_at=resume_at if paused else None,
                updated_at=now,
                changed_by=by,
                changed_at=now,
            )
            .returning(*jobs.c)
        )
        async with self._write() as connection:
            row = (await connection.execute(statement)).first()
        return job_record(row) if row else None

    async def due_jobs(self, until: datetime, limit: int) -> list[JobRecord]:
        # Ordered like the (next_fire_at, id) index, so the scan stops after `limit` rows.
        statement = (
            select(jobs)
            .where(jobs.c.next_fire_at <= until)
            .order_by(jobs.c.next_fire_at, jobs.c.id)
            .limit(limit)
        )
        async with self._read() as connection:
            return [job_record(row) for row in await connection.execute(statement)]

    async def next_cursor(self) -> datetime | None:
        async with self._read() as connection:
            value: datetime | None = await connection.scalar(select(func.min(jobs.c.next_fire_at)))
        return value

    async def advance_jobs(
        self, advances: Sequence[JobAdvance], now: datetime, fence: Fence | None = None
    ) -> int:
        applied = 0
        # The leader's epoch, checked by the cursor update itself: a deposed leader moves
        # no cursor, so inserts no run.
        fenced = (
            []
            if fence is None
            else [
                select(leadership.c.name)
                .where(
                    leadership.c.name == _SCHEDULER,
                    leadership.c.holder == fence.holder,
                    leadership.c.epoch == fence.epoch,
                    leadership.c.expires_at > self._db_now(now),
                )
                .exists()
            ]
        )
        names: dict[int, str] = {}
        new_runs: list[NewRun] = []
        async with self._write() as connection:
            chunks = (
                chunk
                for members in _rounds(advances, lambda advance: advance.job_id)
                for chunk in _chunks(members, _ROWS)
            )
            for chunk in chunks:
                # UPDATE jobs SET next_fire_at = next WHERE id = job AND next_fire_at = expected,
                # for the whole chunk in one statement.
                given = self._rows(
                    "advance",
                    [
                        column("job_id", Integer()),
                        column("expected", UtcDateTime()),
                        column("next", UtcDateTime()),
                    ],
                    [(a.job_id, a.expected_cursor, a.next_cursor) for a in chunk],
                )
                result = await connection.execute(
                    update(jobs)
                    .where(
                        jobs.c.id == given.c.job_id,
                        jobs.c.next_fire_at == self._typed(given.c.expected),
                        *fenced,
                    )
                    .values(next_fire_at=self._typed(given.c.next))
                    .returning(jobs.c.id, jobs.c.group, jobs.c.name)
                )
                moved = {row.id: f"{row.group}/{row.name}" for row in result}
                # An advance whose cursor moved meanwhile lost to another scheduler: its runs
                # are not ours to insert.
                won = [advance for advance in chunk if advance.job_id in moved]
                applied += len(won)
                names |= moved
                new_runs.extend(run for advance in won for run in advance.runs)
            foreign = {run.job_id for run in new_runs} - names.keys()
            names |= await self._job_names(connection, foreign)
            await self._insert_runs(connection, new_runs, names, Actor.SCHEDULER, now)
        return applied

    # -- runs -------------------------------------------------------------------------------
    async def create_runs(
        self, runs: Sequence[NewRun], actor: Actor, now: datetime
    ) -> list[RunRecord]:
        if not runs:
            return []
        async with self._write() as connection:
            names = await self._job_names(connection, (run.job_id for run in runs))
            return await self._insert_runs(connection, runs, names, actor, now)

    async def get_run(self, run_id: int) -> RunRecord | None:
        async with self._read() as connection:
            row = (await connection.execute(select(runs).where(runs.c.id == run_id))).first()
        return run_record(row) if row else None

    async def list_runs(
        self,
        job_id: int | None = None,
        states: Sequence[RunState] | None = None,
        limit: int = 50,
        before_id: int | None = None,
        groups: Collection[str] | None = None,
    ) -> list[RunRecord]:
        statement = select(runs).order_by(runs.c.id.desc()).limit(limit)
        if job_id is not None:
            statement = statement.where(runs.c.job_id == job_id)
        if states is not None:
            statement = statement.where(runs.c.state.in_(_state_names(states)))
        if before_id is not None:
            statement = statement.where(runs.c.id < before_id)
        if groups is not None:
            in_groups = select(jobs.c.id).where(jobs.c.group.in_(sorted(groups)))
            statement = statement.where(runs.c.job_id.in_(in_groups))
        async with self._read() as connection:
            return [run_record(row) for row in await connection.execute(statement)]

    async def latest_runs(self, job_ids: Sequence[int]) -> dict[int, RunRecord]:
        if not job_ids:
            return {}
        # Each job's newest run id, then those rows by primary key.
        newest = newest_run(runs.c.id)
        async with self._read() as connection:
            found = await connection.scalars(select(newest).where(jobs.c.id.in_(set(job_ids))))
            run_ids = [run_id for run_id in found if run_id is not None]
            if not run_ids:
                return {}
            result = await connection.execute(select(runs).where(runs.c.id.in_(run_ids)))
            return {run.job_id: run for run in map(run_record, result)}

    async def due_runs(
        self, until: datetime, limit: int, for_worker: str | None = None
    ) -> list[RunRecord]:
        statement = (
            select(runs)
            .where(runs.c.state == RunState.SCHEDULED.value, runs.c.not_before <= until)
            # Backfill runs last: a large backfill waiting one at a time must not fill the
            # batch and crowd out the runs of other jobs.
            .order_by(
                case((runs.c.trigger == Trigger.BACKFILL.value, 1), else_=0),
                runs.c.not_before,
                runs.c.id,
            )
            .limit(limit)
        )
        if for_worker is not None:
            statement = statement.where(runs.c.target.in_(["", for_worker]))
        async with self._read() as connection:
            return [run_record(row) for row in await connection.execute(statement)]

    async def next_run_due(self) -> datetime | None:
        statement = select(func.min(runs.c.not_before)).where(
            runs.c.state == RunState.SCHEDULED.value
        )
        async with self._read() as connection:
            value: datetime | None = await connection.scalar(statement)
        return value

    async def runs_in_states(
        self,
        states: Sequence[RunState],
        job_ids: Sequence[int] | None = None,
        worker: str | None = None,
    ) -> list[RunRecord]:
        if not states or (job_ids is not None and not job_ids):
            return []
        statement = select(runs).where(runs.c.state.in_(_state_names(states))).order_by(runs.c.id)
        if job_ids is not None:
            statement = statement.where(runs.c.job_id.in_(set(job_ids)))
        if worker is not None:
            statement = statement.where(runs.c.worker == worker)
        async with self._read() as connection:
            return [run_record(row) for row in await connection.execute(statement)]

    async def transition(
        self,
        changes: Sequence[Transition],
        now: datetime,
        new_runs: Sequence[NewRun] = (),
    ) -> list[RunRecord]:
        changed: dict[int, RunRecord] = {}
        events: list[dict[str, Any]] = []
        async with self._write() as connection:
            for batch in _transition_batches(changes):
                by_run = {change.run_id: change for change in batch}
                for run in await self._transition_batch(connection, batch, now):
                    change = by_run[run.id]
                    changed[run.id] = run
                    events.append(
                        {
                            "run_id": run.id,
                            "at": now,
                            "state": run.state.value,
                            "actor": change.actor.value,
                            "host": change.host,
                            "pid": change.pid,
                            "exit_code": change.exit_code,
                            "reason": change.reason,
                        }
                    )
            if events:
                await connection.execute(run_events.insert(), events)
            # A retry follows only an ending that happened: a late report on a run that
            # had already ended (lost, killed) must not start another attempt.
            new_runs = [run for run in new_runs if run.retry_of is None or run.retry_of in changed]
            if new_runs:
                names = await self._job_names(connection, (run.job_id for run in new_runs))
                # Retries are the scheduler's decision, whoever reported the ending.
                await self._insert_runs(connection, new_runs, names, Actor.SCHEDULER, now)
        first = {change.run_id: index for index, change in reversed(list(enumerate(changes)))}
        return sorted(changed.values(), key=lambda run: first[run.id])

    async def _transition_batch(
        self, connection: AsyncConnection, batch: Sequence[Transition], now: datetime
    ) -> list[RunRecord]:
        """One UPDATE for changes sharing a target and expected states, on distinct runs."""
        target = batch[0].target
        given = self._rows(
            "change",
            [
                column("run_id", BigInteger()),
                column("reason", Text()),
                column("worker", Text()),
                column("host", Text()),
                column("pid", Integer()),
                column("exit_code", Integer()),
            ],
            [
                (c.run_id, _text(c.reason), c.worker, _text(c.host), c.pid, c.exit_code)
                for c in batch
            ],
        )
        assignments: dict[str, Any] = {
            "state": target.value,
            # A change without a reason keeps the one the run has.
            "reason": func.coalesce(given.c.reason, runs.c.reason),
        }
        if target is RunState.CLAIMED:
            assignments |= {"claimed_at": now, "worker": given.c.worker}
        elif target is RunState.SCHEDULED:  # handed back unstarted: anyone may claim it
            assignments |= {"claimed_at": None, "worker": None}
        elif target is RunState.RUNNING:
            assignments |= {
                "started_at": now,
                "host": given.c.host,
                "pid": self._typed(given.c.pid),
            }
        if target in FINAL_STATES:
            assignments |= {"finished_at": now, "exit_code": self._typed(given.c.exit_code)}
        conditions = [
            runs.c.id == given.c.run_id,
            runs.c.state.in_(_state_names(batch[0].expected)),
        ]
        if target is RunState.SCHEDULED:
            # Only the worker holding the run may hand it back.
            conditions.append(runs.c.worker == given.c.worker)
        result = await connection.execute(
            update(runs).where(*conditions).values(assignments).returning(*runs.c)
        )
        return [run_record(row) for row in result]

    async def request_kill(self, run_id: int, actor: Actor, now: datetime) -> RunRecord | None:
        statement = (
            update(runs)
            .where(runs.c.id == run_id, runs.c.state.in_(_ACTIVE))
            .values(kill_requested=True)
            .returning(*runs.c)
        )
        async with self._write() as connection:
            row = (await connection.execute(statement)).first()
            if row is None:
                return None
            run = run_record(row)
            await connection.execute(
                run_events.insert().values(
                    run_id=run.id,
                    at=now,
                    state=run.state.value,
                    actor=actor.value,
                    reason=KILL_REASON,
                )
            )
        return run

    async def run_events(self, run_id: int) -> list[RunEvent]:
        statement = select(run_events).where(run_events.c.run_id == run_id)
        async with self._read() as connection:
            result = await connection.execute(statement.order_by(run_events.c.id))
            return [_event(row) for row in result]

    async def append_output(self, chunks: Sequence[OutputChunk]) -> None:
        """Store output chunks, once per ``(run_id, seq)``; chunks of runs that no longer
        exist (deleted or pruned while the worker re-sent them) are dropped."""
        if not chunks:
            return
        rows = [
            {
                "run_id": chunk.run_id,
                "seq": chunk.seq,
                "stream": chunk.stream,
                "data": _text(chunk.data),
                "at": chunk.at,
            }
            for chunk in chunks
        ]
        statement = self._insert(output_chunks).on_conflict_do_nothing(
            index_elements=[output_chunks.c.run_id, output_chunks.c.seq]
        )
        try:
            async with self._write() as connection:
                await connection.execute(statement, rows)
            return
        except IntegrityError:
            pass  # a run is gone (foreign key): retry with only the runs that exist
        async with self._write() as connection:
            result = await connection.execute(
                select(runs.c.id)
                .where(runs.c.id.in_({chunk.run_id for chunk in chunks}))
                .with_for_update(read=True)
            )
            alive = set(result.scalars())
            rows = [row for row in rows if row["run_id"] in alive]
            if rows:
                await connection.execute(statement, rows)

    async def read_output(
        self, run_id: int, after_seq: int = -1, limit: int = 1000
    ) -> list[OutputChunk]:
        statement = (
            select(output_chunks)
            .where(output_chunks.c.run_id == run_id, output_chunks.c.seq > after_seq)
            .order_by(output_chunks.c.seq)
            .limit(limit)
        )
        async with self._read() as connection:
            result = await connection.execute(statement)
            return [
                OutputChunk(
                    run_id=row.run_id, seq=row.seq, stream=row.stream, data=row.data, at=row.at
                )
                for row in result
            ]

    async def newest_run_id(self) -> int:
        async with self._read() as connection:
            return int(await connection.scalar(select(func.max(runs.c.id))) or 0)

    async def jobs_with_runs_between(self, after_id: int, up_to_id: int) -> list[int]:
        statement = (
            select(runs.c.job_id)
            .distinct()
            .where(runs.c.id > after_id, runs.c.id <= up_to_id)
            .order_by(runs.c.job_id)
        )
        async with self._read() as connection:
            return list((await connection.scalars(statement)).all())

    async def runs_beyond_keep(
        self, job_ids: Sequence[int], default_keep_runs: int | None
    ) -> dict[int, int]:
        if not job_ids:
            return {}
        async with self._read() as connection:
            rows = await connection.execute(
                select(jobs.c.id, jobs.c.keep_runs).where(jobs.c.id.in_(set(job_ids)))
            )
            by_keep: dict[int, list[int]] = {}
            for job_id, own in rows:
                keep = own if own is not None else default_keep_runs
                if keep is not None:
                    by_keep.setdefault(max(keep, 0), []).append(job_id)
            newest_pruned: dict[int, int] = {}
            for keep, ids in by_keep.items():
                # Per job: the id of its (keep+1)-th newest finished run, the newest one to
                # go (NULL when it has no more than it keeps): a walk down (job_id, id).
                older = runs.alias("older")
                first_to_go = (
                    select(older.c.id)
                    .where(older.c.job_id == jobs.c.id, older.c.state.in_(_FINAL))
                    .order_by(older.c.id.desc())
                    .offset(keep)
                    .limit(1)
                    .correlate(jobs)
                    .scalar_subquery()
                )
                result = await connection.execute(
                    select(jobs.c.id, first_to_go).where(jobs.c.id.in_(ids))
                )
                newest_pruned.update({job_id: top for job_id, top in result if top is not None})
        return newest_pruned

    async def delete_finished_runs(self, job_id: int, up_to_id: int, batch: int) -> int:
        victims = (
            select(runs.c.id)
            .where(runs.c.job_id == job_id, runs.c.id <= up_to_id, runs.c.state.in_(_FINAL))
            .order_by(runs.c.id)
            .limit(batch)
        )
        return await self._delete_runs(victims)

    async def prune_aged_runs(
        self, now: datetime, default_keep_days: float | None, batch: int
    ) -> int:
        async with self._read() as connection:
            kept_for = list((await connection.scalars(select(jobs.c.keep_days).distinct())).all())
        deleted = 0
        for own in kept_for:
            days = own if own is not None else default_keep_days
            if days is None or deleted >= batch:
                continue
            same_age = jobs.c.keep_days.is_(None) if own is None else jobs.c.keep_days == own
            # Oldest first down the finished_at index, only as far as the cutoff.
            victims = (
                select(runs.c.id)
                .where(
                    runs.c.finished_at < now - timedelta(days=days),
                    runs.c.state.in_(_FINAL),
                    runs.c.job_id.in_(select(jobs.c.id).where(same_age)),
                )
                .order_by(runs.c.finished_at)
                .limit(batch - deleted)
            )
            deleted += await self._delete_runs(victims)
        return deleted

    async def _delete_runs(self, victims: Select[Any]) -> int:
        async with self._write() as connection:
            # Events and output go with the runs (ON DELETE CASCADE).
            result = await connection.execute(delete(runs).where(runs.c.id.in_(victims)))
            return result.rowcount

    # -- lifecycle --------------------------------------------------------------------------
    # -- workers ----------------------------------------------------------------------------
    async def save_worker(self, worker: WorkerRecord) -> WorkerRecord:
        values = {
            "host": worker.host,
            "pools": json.dumps(worker.pools),
            "tags": json.dumps(worker.tags, sort_keys=True),
            "slots": worker.slots,
            "cpu": worker.cpu,
            "memory_mb": worker.memory_mb,
            "version": worker.version,
            "state": worker.state,
            "last_seen": worker.last_seen,
        }
        async with self._write() as connection:
            updated = (
                await connection.execute(
                    update(workers)
                    .where(workers.c.name == worker.name)
                    .values(values)
                    .returning(*workers.c)
                )
            ).first()
            if updated is not None:
                return _worker(updated)
            try:
                row = (
                    await connection.execute(
                        workers.insert()
                        .values(name=worker.name, first_seen=worker.first_seen, **values)
                        .returning(*workers.c)
                    )
                ).one()
            except IntegrityError as error:
                raise ValueError(f"worker {worker.name} joined twice at once; retry") from error
        return _worker(row)

    async def touch_worker(
        self, name: str, now: datetime, state: str | None = None
    ) -> WorkerRecord | None:
        changes: dict[str, Any] = {"last_seen": now}
        if state is not None:
            changes["state"] = state
        async with self._write() as connection:
            row = (
                await connection.execute(
                    update(workers)
                    .where(workers.c.name == name, workers.c.state != "lost")
                    .values(changes)
                    .returning(*workers.c)
                )
            ).first()
            if row is None:
                row = (
                    await connection.execute(select(workers).where(workers.c.name == name))
                ).first()
        return _worker(row) if row else None

    async def get_worker(self, name: str) -> WorkerRecord | None:
        async with self._read() as connection:
            row = (await connection.execute(select(workers).where(workers.c.name == name))).first()
        return _worker(row) if row else None

    async def list_workers(self) -> list[WorkerRecord]:
        async with self._read() as connection:
            result = await connection.execute(select(workers).order_by(workers.c.name))
            return [_worker(row) for row in result]

    async def mark_workers_lost(self, names: Sequence[str], silent_since: datetime) -> list[str]:
        if not names:
            return []
        async with self._write() as connection:
            result = await connection.execute(
                update(workers)
                .where(
                    workers.c.name.in_(set(names)),
                    workers.c.state != "lost",
                    workers.c.last_seen < silent_since,
                )
                .values(state="lost")
                .returning(workers.c.name)
            )
            return sorted(row.name for row in result)

    async def note_waiting(self, run_ids: Sequence[int], reason: str) -> None:
        if not run_ids:
            return
        async with self._write() as connection:
            await connection.execute(
                update(runs)
                .where(runs.c.id.in_(set(run_ids)), runs.c.state == RunState.SCHEDULED.value)
                .values(reason=reason)
            )

    # -- leadership and nodes ---------------------------------------------------------------
    def _db_now(self, now: datetime) -> ColumnElement[Any]:
        """The database's clock on PostgreSQL (servers' clocks may disagree); ``now`` on
        SQLite, where one server is all there is."""
        if self._kind == "postgresql":
            return func.now()
        return literal(now, UtcDateTime())

    async def claim_leadership(self, node: str, lease: timedelta, now: datetime) -> Leadership:
        clock = self._db_now(now)
        until = (
            clock + literal(lease)
            if self._kind == "postgresql"
            else literal(now + lease, UtcDateTime())
        )
        statement = self._insert(leadership).values(
            name=_SCHEDULER, holder=node, epoch=1, expires_at=until
        )
        current = leadership.c
        statement = statement.on_conflict_do_update(
            index_elements=[current.name],
            set_={
                "holder": statement.excluded.holder,
                "epoch": case(
                    (and_(current.holder == node, current.expires_at > clock), current.epoch),
                    else_=current.epoch + 1,
                ),
                "expires_at": statement.excluded.expires_at,
            },
            where=or_(current.holder == node, current.expires_at <= clock),
        )
        wanted = (current.holder, current.epoch, current.expires_at, clock.label("now"))
        async with self._write() as connection:
            # Renewed or taken: the row as written. Another's valid lease: read it.
            row = (await connection.execute(statement.returning(*wanted))).one_or_none()
            if row is None:
                row = (
                    await connection.execute(select(*wanted).where(current.name == _SCHEDULER))
                ).one()
        return _leadership(row)

    async def release_leadership(self, node: str) -> None:
        async with self._write() as connection:
            await connection.execute(
                update(leadership)
                .where(leadership.c.name == _SCHEDULER, leadership.c.holder == node)
                .values(expires_at=self._db_now(datetime.now(UTC)))
            )

    async def read_leadership(self, now: datetime) -> Leadership | None:
        current = leadership.c
        statement = select(
            current.holder, current.epoch, current.expires_at, self._db_now(now).label("now")
        ).where(current.name == _SCHEDULER)
        async with self._read() as connection:
            row = (await connection.execute(statement)).first()
        return _leadership(row) if row else None

    async def touch_node(
        self, node: str, version: str, now: datetime, clock_offset: float | None = None
    ) -> datetime:
        clock = self._db_now(now)
        statement = self._insert(nodes).values(
            name=node,
            version=version,
            started_at=clock,
            last_seen=clock,
            clock_offset=clock_offset,
        )
        statement = statement.on_conflict_do_update(
            index_elements=[nodes.c.name],
            set_={
                "version": statement.excluded.version,
                "last_seen": statement.excluded.last_seen,
                "clock_offset": statement.excluded.clock_offset,
            },
        )
        async with self._write() as connection:
            # last_seen: the transaction's start on the database's clock (on SQLite: now).
            seen = (await connection.execute(statement.returning(nodes.c.last_seen))).scalar_one()
        return seen if self._kind == "postgresql" else now

    async def list_nodes(self) -> list[NodeRecord]:
        async with self._read() as connection:
            result = await connection.execute(select(nodes).order_by(nodes.c.name))
            return [
                NodeRecord(row.name, row.version, row.started_at, row.last_seen, row.clock_offset)
                for row in result
            ]

    async def ping(self) -> None:
        async with self._read() as connection:
            await connection.scalar(select(1))

    async def close(self) -> None:
        await self._engine.dispose()


def _text(value: str | None) -> str | None:
    """Text a process wrote, storable anywhere: PostgreSQL refuses NUL characters, so they
    become U+FFFD on every database alike."""
    return value.replace("\x00", "\ufffd") if value else value


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _rounds(items: Iterable[_T], key: Callable[[_T], int]) -> list[list[_T]]:
    """``items`` in rounds where each key occurs at most once: the n-th item for a key goes
    to round n, so one row's changes keep their order while different rows share one
    statement. Each round is in key order, so concurrent callers lock rows in the same
    order and cannot deadlock on each other."""
    rounds: list[list[_T]] = []
    seen: Counter[int] = Counter()
    for item in items:
        index = seen[key(item)]
        seen[key(item)] += 1
        if index == len(rounds):
            rounds.append([])
        rounds[index].append(item)
    return [sorted(members, key=key) for members in rounds]


def _transition_batches(changes: Sequence[Transition]) -> Iterator[Sequence[Transition]]:
    """Batches for one UPDATE each: one target and expected set, every run at most once."""
    for members in _rounds(changes, lambda change: change.run_id):
        groups: dict[tuple[RunState, frozenset[RunState]], list[Transition]] = {}
        for change in members:
            groups.setdefault((change.target, change.expected), []).append(change)
        for group in groups.values():
            yield from _chunks(group, _ROWS)


if TYPE_CHECKING:
    from belfry.ports.store import Store

    def _implements_the_port(store: SqlStore) -> Store:
        # mypy proves here that SqlStore fulfils the Store protocol, signature by signature.
        return store
