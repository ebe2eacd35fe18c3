"""The chains part of the SQL store: which jobs follow others, and when the jobs they
follow last ended as they wait for."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, exists, func, select, tuple_
from sqlalchemy.orm import aliased

from belfry.adapters.store.connections import SqlConnections
from belfry.adapters.store.job_rows import job_record
from belfry.adapters.store.schema import jobs, runs
from belfry.core.records import JobRecord, Trigger
from belfry.core.states import RunState

__all__ = ["ChainStore"]


class ChainStore(SqlConnections):
    async def chained_jobs(self) -> list[JobRecord]:
        # The (after_jobs) index holds the few chained jobs' keys worth reading; each is
        # " GROUP/NAME ...": a range both databases take from the index (IS NOT NULL made
        # SQLite, and PostgreSQL without statistics, scan every job).
        statement = select(jobs).where(jobs.c.after_jobs > "")
        async with self._read() as connection:
            return [job_record(row) for row in await connection.execute(statement)]

    async def last_counting_ends(
        self, jobs_: Sequence[str], states: Sequence[RunState], since: datetime
    ) -> dict[str, datetime | None]:
        wanted = {key: tuple(key.split("/", 1)) for key in jobs_}
        ended: dict[str, datetime | None] = dict.fromkeys(wanted)
        if not wanted:
            return ended
        later = aliased(runs)
        retried = exists().where(
            and_(
                later.c.job_id == runs.c.job_id,
                later.c.scheduled_for == runs.c.scheduled_for,
                later.c.target == runs.c.target,
                later.c.attempt > runs.c.attempt,
            )
        )
        statement = (
            select(jobs.c.group, jobs.c.name, func.max(runs.c.finished_at))
            .select_from(jobs.join(runs, runs.c.job_id == jobs.c.id))
            .where(
                tuple_(jobs.c.group, jobs.c.name).in_(list(wanted.values())),
                runs.c.state.in_([state.value for state in states]),
                runs.c.finished_at >= since,
                ~retried,
            )
            .group_by(jobs.c.group, jobs.c.name)
        )
        async with self._read() as connection:
            for group, name, at in await connection.execute(statement):
                ended[f"{group}/{name}"] = at
        return ended

    async def last_chained_at(self, job_id: int) -> datetime | None:
        statement = select(func.max(runs.c.not_before)).where(
            runs.c.job_id == job_id, runs.c.trigger == Trigger.AFTER.value
        )
        async with self._read() as connection:
            value: datetime | None = await connection.scalar(statement)
        return value
