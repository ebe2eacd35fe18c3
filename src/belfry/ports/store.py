"""The store port: the contract every database adapter fulfils.

Every method is one transaction: it either happens entirely or not at all. Times going in
and out are aware UTC datetimes with microsecond precision. The contract test suite
(``tests/store``) runs every method against every adapter on a real database.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from belfry.core.calendars import CalendarSpec
from belfry.core.deliveries import AlertingWrites
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
    WorkerRecord,
)
from belfry.core.states import Actor, RunState
from belfry.ports.accounts import AccountStore
from belfry.ports.chains import ChainStore
from belfry.ports.job_search import JobSearch
from belfry.ports.maintenance import MaintenanceStore
from belfry.ports.notifications import NotificationStore
from belfry.ports.stats import StatsStore

__all__ = ["InvalidValue", "Store"]


class InvalidValue(ValueError):
    """A value the database cannot hold: a number out of its column's range, text with a
    NUL character. The caller's input, not a fault of the store."""


class Store(
    AccountStore,
    NotificationStore,
    StatsStore,
    MaintenanceStore,
    JobSearch,
    ChainStore,
    Protocol,
):
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
        """Create, replace and delete jobs, calendars, channels and group settings in one
        transaction.

        Each of ``calendars`` is created or replaces the calendar of its name; the
        calendars named in ``delete_calendars`` are deleted (a missing one is no error).
        ``alerting``'s channels and groups likewise.

        A write with ``job_id`` None creates a job (``(group, name)`` must be new, else
        ValueError and nothing changes); with a ``job_id`` it replaces that job's spec and,
        if ``reset_cursor``, its cursor. Deleting a job deletes its runs, events and output.
        A job's ``paused`` column follows ``spec.paused`` on every write.
        """
        ...

    async def list_calendars(self) -> list[CalendarRecord]:
        """Every calendar, ordered by name."""
        ...

    async def list_jobs(self, group: str | None = None) -> list[JobRecord]:
        """All jobs (of ``group``), ordered by group then name."""
        ...

    async def jobs_with_secrets(self) -> list[JobRecord]:
        """The jobs whose env holds a sealed secret (at least those; found without
        parsing every job)."""
        ...

    async def get_job(self, group: str, name: str) -> JobRecord | None: ...

    async def get_jobs(self, job_ids: Sequence[int]) -> dict[int, JobRecord]:
        """The jobs with these ids that exist, by id."""
        ...

    async def set_paused(
        self,
        job_id: int,
        paused: bool,
        note: str | None,
        now: datetime,
        resume_at: datetime | None = None,
        by: str | None = None,
    ) -> JobRecord | None:
        """Pause (until ``resume_at``, when given) or resume a job (None if it does not
        exist), as done ``by`` someone. Resuming clears the note and the resume time."""
        ...

    async def due_jobs(self, until: datetime, limit: int) -> list[JobRecord]:
        """Jobs whose cursor is at or before ``until``, earliest first, at most ``limit``.

        Served by an index on the cursor: cost grows with the due jobs, not all jobs.
        """
        ...

    async def next_cursor(self) -> datetime | None:
        """The earliest cursor of any job (None when no job has one)."""
        ...

    async def advance_jobs(
        self, advances: Sequence[JobAdvance], now: datetime, fence: Fence | None = None
    ) -> int:
        """For each advance whose job's cursor still equals ``expected_cursor``: move the
        cursor and insert its runs, each with a creation event by the scheduler. An
        occurrence key ``(job_id, scheduled_for, attempt, target)`` that already exists is
        left as it is (never a second run). With a ``fence``, nothing applies unless its
        holder still leads under its epoch, checked in the same statement (a deposed
        leader's writes fail). Returns the number of advances applied.
        """
        ...

    # -- runs -------------------------------------------------------------------------------
    async def create_runs(
        self, runs: Sequence[NewRun], actor: Actor, now: datetime
    ) -> list[RunRecord]:
        """Insert runs (manual triggers, retries) with a creation event each; runs whose
        occurrence key exists are not inserted and not returned."""
        ...

    async def get_run(self, run_id: int) -> RunRecord | None: ...

    async def list_runs(
        self,
        job_id: int | None = None,
        states: Sequence[RunState] | None = None,
        limit: int = 50,
        before_id: int | None = None,
        groups: Collection[str] | None = None,
    ) -> list[RunRecord]:
        """Runs, newest (highest id) first; filters combine with AND (``groups``: only
        runs of jobs in those groups)."""
        ...

    async def latest_runs(self, job_ids: Sequence[int]) -> dict[int, RunRecord]:
        """Each job's run with the highest id (its latest), for the jobs that have one.
        One query, served by the (job_id, id) index."""
        ...

    async def due_runs(
        self, until: datetime, limit: int, for_worker: str | None = None
    ) -> list[RunRecord]:
        """Scheduled runs whose ``not_before`` is at or before ``until``, earliest first,
        backfill runs after all others (a long backfill never crowds other jobs out);
        with ``for_worker``, only those without a target or targeted at that worker (runs
        waiting for other workers never crowd its claims out of ``limit``)."""
        ...

    async def next_run_due(self) -> datetime | None:
        """The earliest ``not_before`` of any scheduled run."""
        ...

    async def runs_in_states(
        self,
        states: Sequence[RunState],
        job_ids: Sequence[int] | None = None,
        worker: str | None = None,
    ) -> list[RunRecord]:
        """Every run in one of ``states`` (of those jobs, held by that worker), oldest
        first."""
        ...

    async def transition(
        self,
        changes: Sequence[Transition],
        now: datetime,
        new_runs: Sequence[NewRun] = (),
    ) -> list[RunRecord]:
        """Apply each change whose run is still in one of its ``expected`` states, with an
        event row each, and insert ``new_runs`` (retries), all in one transaction. A new
        run with ``retry_of`` is inserted only if that run's change applied.

        Entering ``claimed`` sets ``claimed_at`` and ``worker``; ``running`` sets
        ``started_at``, ``host`` and ``pid``; a final state sets ``finished_at`` and
        ``exit_code``. Returns the runs that changed, as they are now.
        """
        ...

    async def request_kill(self, run_id: int, actor: Actor, now: datetime) -> RunRecord | None:
        """Flag an active run to be killed (recorded as an event); None if the run is not
        claimed or running."""
        ...

    async def run_events(self, run_id: int) -> list[RunEvent]:
        """A run's events in the order they happened."""
        ...

    async def append_output(self, chunks: Sequence[OutputChunk]) -> None:
        """Store output chunks; a chunk whose ``(run_id, seq)`` exists is ignored. NUL
        characters (in the data, and in a transition's reason and host) are stored as
        U+FFFD on every database (PostgreSQL cannot store them)."""
        ...

    async def read_output(
        self, run_id: int, after_seq: int = -1, limit: int = 1000
    ) -> list[OutputChunk]:
        """A run's chunks with ``seq > after_seq``, in order."""
        ...

    # Retention: the pruner finds what to delete with queries, never by reading every job.
    async def newest_run_id(self) -> int:
        """The highest run id (0 when there are no runs)."""
        ...

    async def jobs_with_runs_between(self, after_id: int, up_to_id: int) -> list[int]:
        """The ids of the jobs with a run whose id is in ``(after_id, up_to_id]``."""
        ...

    async def runs_beyond_keep(
        self, job_ids: Sequence[int], default_keep_runs: int | None
    ) -> dict[int, int]:
        """For each of ``job_ids`` with more finished runs than it keeps (its own
        ``keep_runs``, else ``default_keep_runs``; None: no limit): the id of its newest
        finished run beyond that number. That run and its older finished runs may go."""
        ...

    async def delete_finished_runs(self, job_id: int, up_to_id: int, batch: int) -> int:
        """Delete up to ``batch`` of the job's finished runs with ids up to ``up_to_id``
        (their events and output with them), oldest first; returns how many."""
        ...

    async def prune_aged_runs(
        self, now: datetime, default_keep_days: float | None, batch: int
    ) -> int:
        """Delete up to ``batch`` finished runs that finished longer ago than their job
        keeps runs (its own ``keep_days``, else ``default_keep_days``; None: no limit),
        oldest first; returns how many. Never a run that is not in a final state."""
        ...

    # -- workers ----------------------------------------------------------------------------
    async def save_worker(self, worker: WorkerRecord) -> WorkerRecord:
        """Create the worker, or replace what is known of the worker of that name (its
        ``first_seen`` is kept). Returns it as stored."""
        ...

    async def touch_worker(
        self, name: str, now: datetime, state: str | None = None
    ) -> WorkerRecord | None:
        """Record that the worker was heard from (``last_seen``), and its new ``state``
        if given, unless it was declared lost: a lost worker is returned unchanged, and
        must say hello again. None for an unknown worker."""
        ...

    async def get_worker(self, name: str) -> WorkerRecord | None:
        """The worker of that name as stored now (None if it never said hello)."""
        ...

    async def list_workers(self) -> list[WorkerRecord]:
        """Every worker, ordered by name."""
        ...

    async def mark_workers_lost(self, names: Sequence[str], silent_since: datetime) -> list[str]:
        """Declare lost the workers of ``names`` still not heard from since
        ``silent_since`` and not yet lost (compare-and-set); returns those declared."""
        ...

    async def note_waiting(self, run_ids: Sequence[int], reason: str) -> None:
        """Set the reason of runs still ``scheduled`` (why they wait), without an event."""
        ...

    # -- leadership and nodes ---------------------------------------------------------------
    async def claim_leadership(self, node: str, lease: timedelta, now: datetime) -> Leadership:
        """Take or renew the scheduler leadership for ``lease`` if it is free, expired or
        ``node``'s own; return the leadership as it is after the attempt. Taking it over
        raises the epoch; renewing an unexpired lease keeps it. Times are the database's
        (PostgreSQL's clock; ``now`` on SQLite, which has one server)."""
        ...

    async def release_leadership(self, node: str) -> None:
        """Let the leadership go at once if ``node`` holds it (a graceful stop)."""
        ...

    async def touch_node(
        self, node: str, version: str, now: datetime, clock_offset: float | None = None
    ) -> datetime:
        """Record that the server ``node`` is alive (database time on PostgreSQL) and the
        offset of its clock it last measured; return the database's time (``now`` on
        SQLite)."""
        ...

    async def list_nodes(self) -> list[NodeRecord]:
        """The server nodes, ordered by name, with the database's leadership view."""
        ...

    async def read_leadership(self, now: datetime) -> Leadership | None:
        """The leadership row, with the database's time (None before any leader)."""
        ...

    # -- lifecycle --------------------------------------------------------------------------
    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        ...

    async def close(self) -> None: ...
