"""The scheduler's hot query is served by the cursor index, not a table scan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, event, text

from belfry.adapters.store import SqlStore
from belfry.core.jobs import JobSpec
from belfry.core.records import JobWrite

T0 = datetime(2025, 3, 1, tzinfo=UTC)
INDEX = "ix_jobs_next_fire_at_id"


async def test_due_jobs_uses_the_cursor_index(store: SqlStore) -> None:
    writes = [
        JobWrite(
            JobSpec(name=f"j{i:05}", schedule="* * * * *", command="true"),
            T0 + timedelta(minutes=i),
        )
        for i in range(5000)
    ]
    await store.apply_jobs(writes, [], T0)
    async with store.engine.begin() as connection:
        await connection.execute(text("ANALYZE"))

    # Capture the statement due_jobs really sends, then ask the database how it runs it.
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Connection, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        captured.append((statement, parameters))

    event.listen(store.engine.sync_engine, "before_cursor_execute", capture)
    try:
        due = await store.due_jobs(T0 + timedelta(minutes=10), 100)
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", capture)
    assert len(due) == 11
    [(statement, parameters)] = [item for item in captured if "FROM jobs" in item[0]]

    explain = "EXPLAIN QUERY PLAN " if store.kind == "sqlite" else "EXPLAIN "
    async with store.engine.connect() as connection:
        result = await connection.exec_driver_sql(explain + statement, parameters)
        plan = "\n".join(str(row) for row in result)
    if store.kind == "sqlite":
        assert f"SEARCH jobs USING INDEX {INDEX}" in plan, plan
        assert "TEMP B-TREE" not in plan, plan  # rows come out of the index in order
    else:
        assert f"Index Scan using {INDEX}" in plan, plan
        assert "Seq Scan" not in plan and "Sort" not in plan, plan
