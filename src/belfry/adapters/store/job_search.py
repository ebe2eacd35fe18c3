"""The jobs page's search, done by the database: one count and one page of rows, so a
page of a 10,000-job list reads 50 specs, not 10,000."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import JSON, ColumnElement, Select, cast, false, func, literal, select

from belfry.adapters.store.connections import SqlConnections
from belfry.adapters.store.job_rows import job_record
from belfry.adapters.store.newest_run import newest_run
from belfry.adapters.store.schema import jobs, runs
from belfry.core.records import JobRecord
from belfry.core.states import RunState

__all__ = ["JobSearch"]


class JobSearch(SqlConnections):
    def _spec_field(self, name: str) -> ColumnElement[Any]:
        # The spec is JSON text: each database reads a field of it its own way.
        if self.kind == "postgresql":
            field: ColumnElement[Any] = cast(jobs.c.spec, JSON)[name].as_string()
            return field
        return func.json_extract(jobs.c.spec, f"$.{name}")

    def _searched(self, words: Sequence[str]) -> list[ColumnElement[bool]]:
        text = func.lower(
            jobs.c.group
            + literal("/")
            + jobs.c.name
            + literal(" ")
            + func.coalesce(self._spec_field("description"), "")
            + literal(" ")
            + func.coalesce(self._spec_field("pool"), "default")
        )
        return [text.contains(word.lower(), autoescape=True) for word in words]

    async def search_jobs(
        self,
        *,
        groups: Collection[str] | None,
        group: str | None = None,
        words: Sequence[str] = (),
        paused: bool | None = None,
        latest_states: Collection[RunState] | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[int, list[JobRecord]]:
        conditions: list[ColumnElement[bool]] = self._searched(words)
        if latest_states is not None:
            newest_state = newest_run(runs.c.state)
            conditions.append(newest_state.in_(sorted(state.value for state in latest_states)))
        if groups is not None:
            conditions.append(jobs.c.group.in_(set(groups)) if groups else false())
        if group is not None:
            conditions.append(jobs.c.group == group)
        if paused is not None:
            conditions.append(jobs.c.paused == paused)
        counted: Select[Any] = select(func.count()).select_from(jobs).where(*conditions)
        page = (
            select(jobs)
            .where(*conditions)
            .order_by(jobs.c.group, jobs.c.name)
            .offset(offset)
            .limit(limit)
        )
        async with self._read() as connection:
            total = int(await connection.scalar(counted) or 0)
            rows = (await connection.execute(page)).all()
        return total, [job_record(row) for row in rows]

    async def upcoming_jobs(self, *, groups: Collection[str] | None, limit: int) -> list[JobRecord]:
        # Down the (next_fire_at, id) index, stopping at the limit: no job list is read.
        statement = (
            select(jobs)
            .where(jobs.c.next_fire_at.is_not(None), jobs.c.paused == false())
            .order_by(jobs.c.next_fire_at, jobs.c.id)
            .limit(limit)
        )
        if groups is not None:
            statement = statement.where(jobs.c.group.in_(set(groups)) if groups else false())
        async with self._read() as connection:
            return [job_record(row) for row in await connection.execute(statement)]

    async def job_groups(self, groups: Collection[str] | None) -> list[str]:
        statement = select(jobs.c.group).distinct().order_by(jobs.c.group)
        if groups is not None:
            statement = statement.where(jobs.c.group.in_(set(groups)) if groups else false())
        async with self._read() as connection:
            return [row[0] for row in await connection.execute(statement)]
