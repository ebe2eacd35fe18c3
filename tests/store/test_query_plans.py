"""The hot queries are served by indexes, not table scans, on both stores.

Each test captures the SQL a store method really sends (a ``before_cursor_execute``
listener) and asks the database how it runs it, with the same parameters: a regression
that drops an index or changes a query's shape or order shows as a scan or a sort in the
plan. The tables hold enough rows, analysed, that the planner prefers an index where one
serves; at 10 million runs a scan that is cheap here would take seconds.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import Connection, event, text

from belfry.adapters.store import SqlStore
from belfry.adapters.store.schema import output_chunks, run_events, runs
from belfry.core.jobs import JobSpec
from belfry.core.records import JobRecord, JobWrite
from belfry.core.states import RunState

T0 = datetime(2025, 3, 1, tzinfo=UTC)
# The seeded history: a few hundred jobs with a few dozen runs each, interleaved in time as
# a scheduler makes them, each run with its events and one or two output chunks.
JOBS = 400
RUNS_PER_JOB = 25
# The newest runs of every JOBS_WAITING-th job wait to be claimed (the claim queries' rows).
JOBS_WAITING = 10
# A page of the jobs list (the UI's and the API's page reads the latest runs of a page).
PAGE = 50

_T = TypeVar("_T")


@dataclass(frozen=True)
class Sent:
    """A SELECT a store method sent, and the database's plan for it (one line per node)."""

    statement: str
    plan: str


async def explained(
    store: SqlStore, call: Callable[[], Awaitable[_T]], *, run: bool = False
) -> tuple[_T, list[Sent]]:
    """Await ``call`` and return its result with the plan of every SELECT it sent; with
    ``run`` (PostgreSQL), the plans as run, with the rows each node gave."""
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Connection, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        captured.append((statement, parameters))

    event.listen(store.engine.sync_engine, "before_cursor_execute", capture)
    try:
        result = await call()
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", capture)
    explain = "EXPLAIN QUERY PLAN " if store.kind == "sqlite" else "EXPLAIN "
    if run:
        assert store.kind == "postgresql", "SQLite's plans do not count rows"
        explain = "EXPLAIN (ANALYZE) "
    sent = []
    async with store.engine.connect() as connection:
        for statement, parameters in captured:
            if not statement.lstrip().upper().startswith(("SELECT", "WITH")):
                continue  # not a query (a SAVEPOINT, a SET, ...)
            rows = await connection.exec_driver_sql(explain + statement, parameters)
            # SQLite: (id, parent, notused, detail); PostgreSQL: one column of text.
            sent.append(Sent(statement, "\n".join(str(row[-1]) for row in rows)))
    return result, sent


def plan_of(sent: list[Sent], marker: str) -> str:
    """The plan of the one statement sent that contains ``marker`` (e.g. ``FROM runs``)."""
    [plan] = [item.plan for item in sent if marker in item.statement]
    return plan


def plans_of(sent: list[Sent], marker: str) -> str:
    """The plans of every statement sent that contains ``marker``, one after the other."""
    plans = [item.plan for item in sent if marker in item.statement]
    assert plans, [item.statement for item in sent]
    return "\n".join(plans)


async def analyze(store: SqlStore) -> None:
    """Fresh planner statistics; on PostgreSQL a VACUUM too, so the visibility map lets
    index-only scans skip the heap (autovacuum does it in production)."""
    if store.kind == "sqlite":
        async with store.engine.begin() as connection:
            await connection.execute(text("ANALYZE"))
        return
    async with store.engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.execute(text("VACUUM ANALYZE"))  # VACUUM refuses a transaction


def _spec(number: int) -> JobSpec:
    return JobSpec(
        name=f"j{number:05}", group=f"g{number % 8}", schedule="* * * * *", command="true"
    )


@dataclass(frozen=True)
class History:
    jobs: list[JobRecord]  # in id order
    run_ids: list[int]  # in id (and time) order
    waiting: int  # runs in state scheduled

    @property
    def newest(self) -> datetime:
        return T0 + timedelta(minutes=RUNS_PER_JOB)


@pytest.fixture
async def history(store: SqlStore) -> History:
    """JOBS jobs, each with RUNS_PER_JOB runs (one a minute), events and output, analysed."""
    await store.apply_jobs([JobWrite(_spec(n), None) for n in range(JOBS)], [], T0)
    jobs = sorted(await store.list_jobs(), key=lambda job: job.id)
    rows = []
    for minute in range(RUNS_PER_JOB):
        for number, job in enumerate(jobs):
            at = T0 + timedelta(minutes=minute)
            waiting = minute == RUNS_PER_JOB - 1 and number % JOBS_WAITING == 0
            state = RunState.SCHEDULED if waiting else RunState.SUCCEEDED
            rows.append(
                {
                    "job_id": job.id,
                    "job": str(job.spec.key),
                    "scheduled_for": at,
                    "attempt": 1,
                    "target": "",
                    "trigger": "schedule",
                    "state": state.value,
                    "not_before": at,
                    "exit_code": None if waiting else 0,
                    "kill_requested": False,
                    "created_at": at,
                    "finished_at": None if waiting else at + timedelta(seconds=2),
                }
            )
    async with store.engine.begin() as connection:
        inserted = await connection.execute(
            runs.insert().returning(runs.c.id, sort_by_parameter_order=True), rows
        )
        run_ids = list(inserted.scalars())
        events = []
        chunks = []
        for position, (run_id, row) in enumerate(zip(run_ids, rows, strict=True)):
            events.append(
                {
                    "run_id": run_id,
                    "at": row["created_at"],
                    "state": "scheduled",
                    "actor": "scheduler",
                }
            )
            if row["finished_at"] is None:
                continue
            events.append(
                {
                    "run_id": run_id,
                    "at": row["finished_at"],
                    "state": row["state"],
                    "actor": "worker",
                }
            )
            for seq in range(1 + position % 2):
                chunks.append(
                    {
                        "run_id": run_id,
                        "seq": seq,
                        "stream": "stdout",
                        "data": f"output line {seq} of run {run_id}\n",
                        "at": row["finished_at"],
                    }
                )
        await connection.execute(run_events.insert(), events)
        await connection.execute(output_chunks.insert(), chunks)
    await analyze(store)
    waiting_runs = sum(1 for row in rows if row["state"] == RunState.SCHEDULED.value)
    return History(jobs, run_ids, waiting_runs)


async def test_due_jobs_uses_the_cursor_index(store: SqlStore) -> None:
    index = "ix_jobs_next_fire_at_id"
    writes = [
        JobWrite(
            JobSpec(name=f"j{i:05}", schedule="* * * * *", command="true"),
            T0 + timedelta(minutes=i),
        )
        for i in range(5000)
    ]
    await store.apply_jobs(writes, [], T0)
    await analyze(store)

    due, sent = await explained(store, lambda: store.due_jobs(T0 + timedelta(minutes=10), 100))
    assert len(due) == 11
    plan = plan_of(sent, "FROM jobs")
    if store.kind == "sqlite":
        assert f"SEARCH jobs USING INDEX {index}" in plan, plan
        assert "TEMP B-TREE" not in plan, plan  # rows come out of the index in order
    else:
        assert f"Index Scan using {index}" in plan, plan
        assert "Seq Scan" not in plan and "Sort" not in plan, plan


async def test_latest_runs_find_the_newest_in_the_job_id_index(
    store: SqlStore, history: History
) -> None:
    page = history.jobs[100 : 100 + PAGE]
    latest, sent = await explained(store, lambda: store.latest_runs([job.id for job in page]))
    assert sorted(latest) == sorted(job.id for job in page)
    newest = history.newest - timedelta(minutes=1)
    assert all(run.scheduled_for == newest for run in latest.values())
    # One statement, or the newest ids and then their rows.
    plan = plans_of(sent, "FROM runs")
    if store.kind == "sqlite":
        # The newest id per job from the (job_id, id) index alone, then each run by its rowid.
        assert "SEARCH runs USING COVERING INDEX ix_runs_job_id_id (job_id=?)" in plan, plan
        assert "SEARCH runs USING INTEGER PRIMARY KEY (rowid=?)" in plan, plan
        assert "SCAN runs" not in plan, plan
    else:
        # max(id) per job: only the index's pages (the visibility map spares the heap), or
        # a walk of it per job, newest first.
        used = r"Index (Only )?Scan (Backward )?using ix_runs_job_id_id on runs"
        assert re.search(used, plan), plan


# SQLite's plans do not say how many rows a step read: PostgreSQL only.
@pytest.mark.on_store("postgresql")
async def test_latest_runs_read_one_index_entry_per_job(store: SqlStore, history: History) -> None:
    """A job that keeps a long history (every second, keep_runs 100,000) costs a jobs page
    one index entry like any other, not its whole history."""
    chatty = history.jobs[120]
    long_history = 20_000
    async with store.engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO runs (job_id, job, scheduled_for, attempt, target, trigger, state,"
                " not_before, kill_requested, created_at, finished_at)"
                " SELECT :job_id, :job, CAST(:at AS timestamptz) - make_interval(secs => i), 1,"
                " '', 'schedule', 'succeeded', :at, false, :at, :at"
                " FROM generate_series(1, :count) AS i"
            ),
            {"job_id": chatty.id, "job": str(chatty.spec.key), "at": T0, "count": long_history},
        )
    await analyze(store)
    page = history.jobs[100 : 100 + PAGE]
    latest, sent = await explained(
        store, lambda: store.latest_runs([job.id for job in page]), run=True
    )
    assert sorted(latest) == sorted(job.id for job in page)
    plan = plans_of(sent, "FROM runs")
    read = sum(
        int(rows) * int(loops)
        for line in plan.splitlines()
        if "ix_runs_job_id_id" in line
        for rows, loops in re.findall(r"actual time=\S+ rows=(\d+) loops=(\d+)", line)
    )
    assert 0 < read <= 2 * PAGE, plan
    assert "Seq Scan on runs" not in plan, plan


async def test_list_runs_of_a_job_walks_its_index_backward(
    store: SqlStore, history: History
) -> None:
    job = history.jobs[123]
    # A page that is a small part of the job's history (the job page shows 20 runs of jobs
    # that keep up to 1,000): when the page is most of it, reading it all and sorting is
    # cheaper, and PostgreSQL rightly does that.
    recent, sent = await explained(store, lambda: store.list_runs(job_id=job.id, limit=5))
    assert [run.scheduled_for for run in recent] == [
        history.newest - timedelta(minutes=minutes) for minutes in range(1, 6)
    ]
    plan = plan_of(sent, "FROM runs")
    if store.kind == "sqlite":
        assert "SEARCH runs USING INDEX ix_runs_job_id_id (job_id=?)" in plan, plan
        assert "TEMP B-TREE" not in plan, plan  # newest first straight from the index
    else:
        # Newest first from the index, stopping after the page: no sort of the history.
        assert "Index Scan Backward using ix_runs_job_id_id on runs" in plan, plan
        assert "Sort" not in plan and "Seq Scan on runs" not in plan, plan


async def test_claims_find_waiting_runs_by_state_index(store: SqlStore, history: History) -> None:
    # A worker's claim: the runs due for it, among millions of finished ones.
    due, sent = await explained(store, lambda: store.due_runs(history.newest, 100, for_worker="w1"))
    assert len(due) == history.waiting
    plan = plan_of(sent, "FROM runs")
    index = "ix_runs_state_not_before"
    if store.kind == "sqlite":
        assert f"SEARCH runs USING INDEX {index} (state=? AND not_before<?)" in plan, plan
    else:
        # An index scan or a bitmap of it; then a sort of the few waiting runs only.
        assert f"using {index} on runs" in plan or f"on {index}" in plan, plan
        assert "Seq Scan on runs" not in plan, plan


async def test_next_run_due_reads_the_state_index_only(store: SqlStore, history: History) -> None:
    first, sent = await explained(store, store.next_run_due)
    assert first == T0 + timedelta(minutes=RUNS_PER_JOB - 1)
    plan = plan_of(sent, "FROM runs")
    index = "ix_runs_state_not_before"
    if store.kind == "sqlite":
        assert f"SEARCH runs USING COVERING INDEX {index} (state=?)" in plan, plan
    else:
        # min() is the first entry of the index after state = 'scheduled'.
        assert f"Index Only Scan using {index} on runs" in plan, plan
        assert "Seq Scan on runs" not in plan, plan


async def test_read_output_uses_the_chunk_key(store: SqlStore, history: History) -> None:
    run_id = history.run_ids[5001]  # finished, and odd: two chunks
    chunks, sent = await explained(store, lambda: store.read_output(run_id, 0, 1000))
    assert [chunk.seq for chunk in chunks] == [1]
    plan = plan_of(sent, "FROM output_chunks")
    if store.kind == "sqlite":
        assert "SEARCH output_chunks USING INDEX sqlite_autoindex_output_chunks_1" in plan, plan
        assert "(run_id=? AND seq>?)" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
    else:
        assert "Index Scan using pk_output_chunks on output_chunks" in plan, plan
        assert "Sort" not in plan and "Seq Scan" not in plan, plan


async def test_run_events_use_the_run_id_index(store: SqlStore, history: History) -> None:
    run_id = history.run_ids[4321]
    events, sent = await explained(store, lambda: store.run_events(run_id))
    assert [event.state for event in events] == [RunState.SCHEDULED, RunState.SUCCEEDED]
    plan = plan_of(sent, "FROM run_events")
    index = "ix_run_events_run_id"
    if store.kind == "sqlite":
        assert f"SEARCH run_events USING INDEX {index} (run_id=?)" in plan, plan
        # The index holds the rowid (the id) after run_id: already in order.
        assert "TEMP B-TREE" not in plan, plan
    else:
        # A sort remains (of one run's few events): the index is on run_id alone.
        assert f"using {index} on run_events" in plan or f"on {index}" in plan, plan
        assert "Seq Scan on run_events" not in plan, plan


async def test_jobs_list_page_walks_the_name_index(store: SqlStore, history: History) -> None:
    (total, page), sent = await explained(
        store, lambda: store.search_jobs(groups=None, offset=0, limit=PAGE)
    )
    assert total == JOBS and len(page) == PAGE
    for item in sent:
        assert "runs" not in item.plan, item.plan
    [rows] = [item.plan for item in sent if "ORDER BY" in item.statement]
    if store.kind == "sqlite":
        assert "SCAN jobs USING INDEX sqlite_autoindex_jobs_1" in rows, rows
        assert "TEMP B-TREE" not in rows, rows
    else:
        # The page in (group, name) order from the unique index: 50 rows read, not 100,000.
        assert "Index Scan using uq_jobs_group_name on jobs" in rows, rows
        assert "Sort" not in rows and "Seq Scan" not in rows, rows


async def test_job_page_finds_its_job_by_name(store: SqlStore, history: History) -> None:
    job = history.jobs[77]
    found, sent = await explained(store, lambda: store.get_job(job.spec.group, job.spec.name))
    assert found is not None and found.id == job.id
    plan = plan_of(sent, "FROM jobs")
    if store.kind == "sqlite":
        assert "SEARCH jobs USING INDEX sqlite_autoindex_jobs_1 (group=? AND name=?)" in plan, plan
    else:
        assert "Index Scan using uq_jobs_group_name on jobs" in plan, plan
        assert "Seq Scan" not in plan, plan


async def test_job_page_finds_followers_by_the_chain_index(
    store: SqlStore, history: History
) -> None:
    # The job page names the jobs that run after it; the chain pass reads the same.
    chained, sent = await explained(store, store.chained_jobs)
    assert chained == []
    plan = plan_of(sent, "FROM jobs")
    if store.kind == "sqlite":
        assert "SEARCH jobs USING INDEX ix_jobs_after_jobs" in plan, plan
    else:
        assert "using ix_jobs_after_jobs on jobs" in plan or "on ix_jobs_after_jobs" in plan, plan
        assert "Seq Scan" not in plan, plan
