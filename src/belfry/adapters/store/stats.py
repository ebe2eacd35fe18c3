"""The statistics part of the SQL store: counts ``/metrics`` reads on every scrape, and
the schema revision ``/readyz`` compares with the migrations this code knows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, column, func, or_, select, table

from belfry.adapters.store.connections import SqlConnections
from belfry.adapters.store.schema import runs
from belfry.core.states import RunState

__all__ = ["SCHEMA_VERSION_TABLE", "StatsStore"]

# Where Alembic keeps the schema's revision: the ``version_table`` the migrations'
# env.py configures (a test checks that the revision read here is the head after a
# migration, so a rename there cannot go unnoticed).
SCHEMA_VERSION_TABLE = "belfry_schema_version"
_version = table(SCHEMA_VERSION_TABLE, column("version_num"))


class StatsStore(SqlConnections):
    async def count_live_runs(self, now: datetime) -> dict[RunState, int]:
        # Both halves are ranges of the (state, not_before) index.
        statement = (
            select(runs.c.state, func.count())
            .where(
                or_(
                    and_(runs.c.state == RunState.SCHEDULED.value, runs.c.not_before <= now),
                    runs.c.state.in_([RunState.CLAIMED.value, RunState.RUNNING.value]),
                )
            )
            .group_by(runs.c.state)
        )
        async with self._read() as connection:
            result = await connection.execute(statement)
            return {RunState(row[0]): int(row[1]) for row in result}

    async def last_successes(self) -> dict[str, datetime]:
        # Grouped by the job id (the (job_id, state) index), named by the run's job column:
        # no join with the jobs table.
        statement = (
            select(func.min(runs.c.job), func.max(runs.c.finished_at))
            .where(runs.c.state == RunState.SUCCEEDED.value)
            .group_by(runs.c.job_id)
        )
        async with self._read() as connection:
            result = await connection.execute(statement)
            return {row[0]: row[1] for row in result if row[1] is not None}

    async def schema_revision(self) -> str | None:
        async with self._read() as connection:
            revision = await connection.scalar(select(_version.c.version_num).limit(1))
        return None if revision is None else str(revision)
