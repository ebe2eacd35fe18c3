"""What the store keeps: jobs, runs, run events and output chunks, as plain values."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from belfry.core.calendars import CalendarSpec
from belfry.core.jobs import JobKey, JobSpec
from belfry.core.states import Actor, RunState

# Who Belfry itself is in the audit log and as a job's last changer (a pause that ends
# by itself, the first admin).
SERVER_ACTOR = "belfry"

__all__ = [
    "AuditEntry",
    "AuditRecord",
    "CalendarRecord",
    "Fence",
    "GrantRecord",
    "JobAdvance",
    "JobRecord",
    "JobWrite",
    "Leadership",
    "NewRun",
    "NodeRecord",
    "OutputChunk",
    "RunEvent",
    "RunRecord",
    "SessionRecord",
    "TokenRecord",
    "Transition",
    "Trigger",
    "UserRecord",
    "WorkerRecord",
]


class Trigger(StrEnum):
    """Why a run exists."""

    SCHEDULE = "schedule"
    MANUAL = "manual"
    RETRY = "retry"
    # ``belfry backfill``: a past occurrence run on request, paced at claim time.
    BACKFILL = "backfill"
    # A job that runs after others (``after:``), when they ended as it waits for.
    AFTER = "after"


@dataclass(frozen=True)
class JobRecord:
    id: int
    spec: JobSpec
    # The job's cursor: its first occurrence not yet fired or skipped (None: no more).
    next_fire_at: datetime | None
    paused: bool
    pause_note: str | None
    created_at: datetime
    updated_at: datetime
    # When the leader resumes a paused job by itself (None: only by hand).
    resume_at: datetime | None = None
    # The spec as files last applied it (GitOps; None: the job was not made by files),
    # and who changed the job last, and when (None: before Belfry kept track).
    applied_spec: JobSpec | None = None
    changed_by: str | None = None
    changed_at: datetime | None = None

    @property
    def key(self) -> JobKey:
        return self.spec.key


@dataclass(frozen=True)
class CalendarRecord:
    spec: CalendarSpec
    created_at: datetime
    updated_at: datetime

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class JobWrite:
    """A job to create (``job_id`` None) or replace, with its cursor."""

    spec: JobSpec
    next_fire_at: datetime | None
    job_id: int | None = None
    # False keeps the stored cursor of an updated job (its schedule did not change).
    reset_cursor: bool = True
    # True: files apply it (``belfry apply -f``), so it becomes the job's applied spec;
    # False: a change made elsewhere (the UI's apply page), which drifts from the files.
    from_files: bool = True
    # Who makes the change (None: not known).
    by: str | None = None


@dataclass(frozen=True)
class NewRun:
    """A run to insert: a due occurrence (``scheduled``) or its skip record (``skipped``)."""

    job_id: int
    scheduled_for: datetime
    attempt: int = 1
    trigger: Trigger = Trigger.SCHEDULE
    state: RunState = RunState.SCHEDULED
    reason: str | None = None
    # Not to be started before this instant (the occurrence, or a retry's backoff).
    not_before: datetime | None = None
    # For a retry: the run whose ending it follows (inserted only if that ending applies).
    retry_of: int | None = None
    # The worker this run is for (``target: all``), part of the occurrence key; '' for
    # any worker that can run the job.
    target: str = ""


@dataclass(frozen=True)
class JobAdvance:
    """Move a job's cursor from ``expected_cursor`` to ``next_cursor`` and insert ``runs``,
    only if the cursor is still ``expected_cursor`` (compare-and-set)."""

    job_id: int
    expected_cursor: datetime
    next_cursor: datetime | None
    runs: list[NewRun] = field(default_factory=list)


@dataclass(frozen=True)
class RunRecord:
    id: int
    job_id: int
    job: str  # group/name
    scheduled_for: datetime
    attempt: int
    trigger: Trigger
    state: RunState
    reason: str | None
    not_before: datetime
    exit_code: int | None
    # The only worker that may take it (``target: all``); None: any worker that can.
    target: str | None
    worker: str | None
    host: str | None
    pid: int | None
    kill_requested: bool
    created_at: datetime
    claimed_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class Transition:
    """A compare-and-set state change: applied only while the run is in ``expected``."""

    run_id: int
    target: RunState
    expected: frozenset[RunState]
    actor: Actor
    reason: str | None = None
    exit_code: int | None = None
    # The worker taking the run (to claimed), or the one handing it back (to scheduled).
    worker: str | None = None
    host: str | None = None
    pid: int | None = None


@dataclass(frozen=True)
class RunEvent:
    run_id: int
    at: datetime
    state: RunState
    actor: Actor
    host: str | None
    pid: int | None
    exit_code: int | None
    reason: str | None


@dataclass(frozen=True)
class OutputChunk:
    run_id: int
    seq: int  # per run, from 0; a chunk re-sent with the same seq is stored once
    stream: str  # stdout | stderr | belfry (truncation markers, executor messages)
    data: str
    at: datetime


@dataclass(frozen=True)
class TokenRecord:
    id: int
    name: str
    role: str  # admin (a global admin's, made on a server host) | worker | user
    pools: list[str]
    created_at: datetime
    # A user token acts as this user.
    user_id: int | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True)
class UserRecord:
    id: int
    name: str
    global_admin: bool
    disabled: bool
    created_at: datetime
    # argon2id; never leaves the services (None: this user cannot log in with a password).
    password_hash: str | None = None


@dataclass(frozen=True)
class GrantRecord:
    """``user`` holds ``role`` on ``group`` (``*``: every group)."""

    user: str
    group: str
    role: str


@dataclass(frozen=True)
class SessionRecord:
    """A logged-in browser: its user and the token its forms must carry (CSRF)."""

    user_id: int
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class AuditEntry:
    """One change or action: who, from where, what, and the thing before and after."""

    actor: str
    action: str
    address: str | None = None
    group: str | None = None
    target: str | None = None
    before: Any = None  # JSON-compatible
    after: Any = None


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: datetime
    entry: AuditEntry


@dataclass(frozen=True)
class WorkerRecord:
    """A worker agent as the servers know it (``belfry cluster``)."""

    name: str
    host: str
    pools: list[str]
    tags: dict[str, str]
    # Declared capacity (None: no limit): slots, cpu units, memory in MiB.
    slots: int | None
    cpu: float | None
    memory_mb: int | None
    version: str
    state: str  # active | draining | lost
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class Leadership:
    """Who leads the servers sharing a database, under which epoch, until when (database
    time), and the database's time when this was read."""

    holder: str
    epoch: int
    expires_at: datetime
    now: datetime

    @property
    def valid(self) -> bool:
        return self.expires_at > self.now


@dataclass(frozen=True)
class Fence:
    """A leader's fencing token: writes made with it apply only while ``holder`` still
    leads under ``epoch``."""

    holder: str
    epoch: int


@dataclass(frozen=True)
class NodeRecord:
    """A server process sharing the database."""

    name: str
    version: str
    started_at: datetime
    last_seen: datetime
    # Seconds to add to the node's clock to read the database's (None: not measured yet).
    clock_offset: float | None = None
