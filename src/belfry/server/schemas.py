"""The API's JSON shapes (INTERFACE.md): what clients script against."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from belfry.core.alerts import GroupSpec
from belfry.core.calendars import CalendarSpec
from belfry.core.channels import ChannelSpec
from belfry.core.drift import Drift
from belfry.core.jobs import JobSpec
from belfry.core.records import (
    CalendarRecord,
    JobRecord,
    OutputChunk,
    RunEvent,
    RunRecord,
    WorkerRecord,
)
from belfry.services.channels import NamedChange

__all__ = [
    "ERROR_RESPONSES",
    "PAGED_LIST_RESPONSE",
    "ApplyRequest",
    "ApplyResponse",
    "CalendarChangeOut",
    "CalendarOut",
    "ChangeOut",
    "ChunkOut",
    "ClusterOut",
    "ErrorOut",
    "EventOut",
    "ExplanationOut",
    "HealthOut",
    "JobDetail",
    "JobSummary",
    "NodeOut",
    "OccurrenceOut",
    "OutputPage",
    "PauseRequest",
    "RunDetail",
    "RunOut",
    "TriggerOut",
    "WorkerOut",
]


class RunOut(BaseModel):
    id: int
    job: str
    attempt: int
    scheduled_for: datetime
    state: str
    reason: str | None
    exit_code: int | None
    started_at: datetime | None
    finished_at: datetime | None
    worker: str | None
    host: str | None
    trigger: str
    pid: int | None
    # The only worker this run is for (a job with ``target: all``); null: any worker.
    target: str | None

    @classmethod
    def of(cls, run: RunRecord) -> RunOut:
        return cls(
            id=run.id,
            job=run.job,
            attempt=run.attempt,
            scheduled_for=run.scheduled_for,
            state=run.state.value,
            reason=run.reason,
            exit_code=run.exit_code,
            started_at=run.started_at,
            finished_at=run.finished_at,
            worker=run.worker,
            host=run.host,
            trigger=run.trigger.value,
            pid=run.pid,
            target=run.target,
        )


class TriggerOut(RunOut):
    """A manual trigger: its first run, and in ``runs`` every run it made (one per worker
    for a job with ``target: all``)."""

    runs: list[RunOut]

    @classmethod
    def of_runs(cls, runs: list[RunRecord]) -> TriggerOut:
        every = [RunOut.of(run) for run in runs]
        return cls(**every[0].model_dump(), runs=every)


class EventOut(BaseModel):
    at: datetime
    state: str
    actor: str
    host: str | None
    pid: int | None
    exit_code: int | None
    reason: str | None

    @classmethod
    def of(cls, event: RunEvent) -> EventOut:
        return cls(
            at=event.at,
            state=event.state.value,
            actor=event.actor.value,
            host=event.host,
            pid=event.pid,
            exit_code=event.exit_code,
            reason=event.reason,
        )


class RunDetail(RunOut):
    events: list[EventOut]


class ChunkOut(BaseModel):
    seq: int
    stream: str
    data: str
    at: datetime

    @classmethod
    def of(cls, chunk: OutputChunk) -> ChunkOut:
        return cls(seq=chunk.seq, stream=chunk.stream, data=chunk.data, at=chunk.at)


class OutputPage(BaseModel):
    run: RunOut
    chunks: list[ChunkOut]
    done: bool = Field(description="The run has ended and every chunk has been returned.")


class JobSummary(BaseModel):
    job: str
    group: str
    name: str
    schedule: str | list[str] | None = Field(
        description="The schedule as written: one expression, or a list fired at the "
        "union; null for a job that runs after others (see `after`)."
    )
    after: str | None = Field(
        default=None,
        description="For a job that runs after others: when, in words "
        "(e.g. 'after etl/extract succeeds').",
    )
    timezone: str
    next_run: datetime | None
    last_state: str | None
    last_scheduled_for: datetime | None
    paused: bool
    pause_note: str | None
    resume_at: datetime | None = Field(
        default=None, description="When a paused job resumes by itself (null: by hand)."
    )

    @classmethod
    def of(cls, job: JobRecord, last: RunRecord | None) -> JobSummary:
        return cls(
            job=str(job.key),
            group=job.spec.group,
            name=job.spec.name,
            schedule=job.spec.schedule,
            after=job.spec.parsed_schedule().expression if job.spec.after else None,
            timezone=job.spec.timezone,
            next_run=job.next_fire_at,
            last_state=last.state.value if last else None,
            last_scheduled_for=last.scheduled_for if last else None,
            paused=job.paused,
            pause_note=job.pause_note,
            resume_at=job.resume_at,
        )


class OccurrenceOut(BaseModel):
    status: str = Field(description="runs | moved | repeated | deferred | skipped | dropped")
    scheduled_for: datetime | None
    runs_at: datetime | None
    local: str = Field(description="The occurrence's wall-clock time in the job's zone.")
    note: str


class ExplanationOut(BaseModel):
    """``belfry explain``'s JSON shape (INTERFACE.md), for a stored job."""

    schedule: str
    timezone: str
    description: str
    next: list[str]
    occurrences: list[OccurrenceOut]


class DriftOut(BaseModel):
    """How a job differs from what files last applied it as."""

    fields: dict[str, list[Any]] = Field(
        description="field -> [as files applied it, as it is now]; empty: the job was "
        "created outside files."
    )
    changed_by: str | None
    changed_at: datetime | None
    summary: str

    @classmethod
    def of(cls, drift: Drift | None) -> DriftOut | None:
        if drift is None:
            return None
        return cls(
            fields={name: list(pair) for name, pair in drift.fields.items()},
            changed_by=drift.changed_by,
            changed_at=drift.changed_at,
            summary=drift.summary(),
        )


class JobDetail(JobSummary):
    spec: dict[str, Any]
    description: str
    next: list[datetime]
    upcoming: list[OccurrenceOut] = Field(
        description="The occurrences up to the next runs, marked where DST or calendars "
        "move, defer, skip or drop them."
    )
    recent_runs: list[RunOut]
    followed_by: list[str] = Field(
        default_factory=list, description="The jobs that run after this one (after:)."
    )
    drift: DriftOut | None = Field(
        default=None,
        description="How the job differs from what files last applied (null: it does "
        "not): changed in the UI, the CLI or through the API since.",
    )


class ApplyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobs: list[JobSpec] = Field(default_factory=list)
    calendars: list[CalendarSpec] = Field(
        default_factory=list, description="Calendars to create or replace, by name."
    )
    channels: list[ChannelSpec] = Field(
        default_factory=list, description="Alert channels to create or replace, by name."
    )
    groups: list[GroupSpec] = Field(
        default_factory=list, description="Settings (alert rules) of groups, by name."
    )
    prune: bool = False
    dry_run: bool = False
    source: Literal["files", "ui"] = Field(
        default="files",
        description="files: the jobs as kept in git (`belfry apply -f`); they become the "
        "jobs' applied specs, and changes made elsewhere since are not overwritten without "
        "`force` (409). ui: a change made by hand (the UI's apply page), shown as drift.",
    )
    force: bool = Field(
        default=False, description="Overwrite jobs changed outside files since their last apply."
    )


class ChangeOut(BaseModel):
    job: str
    action: str
    fields: dict[str, list[Any]] = Field(default_factory=dict)
    drift: DriftOut | None = Field(
        default=None,
        description="Set on an apply from files: the job was changed elsewhere since.",
    )


class CalendarChangeOut(BaseModel):
    calendar: str
    action: str
    fields: dict[str, list[Any]] = Field(default_factory=dict)


class NamedChangeOut(BaseModel):
    """A channel's or group's change; a channel shown without its credentials."""

    name: str
    action: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None

    @classmethod
    def of(cls, change: NamedChange) -> NamedChangeOut:
        return cls(name=change.name, action=change.action, before=change.before, after=change.after)


class ApplyResponse(BaseModel):
    dry_run: bool
    changes: list[ChangeOut]
    calendar_changes: list[CalendarChangeOut] = Field(default_factory=list)
    channel_changes: list[NamedChangeOut] = Field(default_factory=list)
    group_changes: list[NamedChangeOut] = Field(default_factory=list)


class CalendarOut(BaseModel):
    name: str
    spec: dict[str, Any] = Field(description="The calendar as written (what export writes).")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, record: CalendarRecord) -> CalendarOut:
        return cls(
            name=record.name,
            spec=record.spec.to_document(),
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


class PauseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=1000)
    until: AwareDatetime | None = Field(
        default=None, description="Resume the job by itself at this time (RFC 3339)."
    )


class WorkerOut(BaseModel):
    name: str
    host: str
    pools: list[str]
    tags: dict[str, str]
    slots: int | None
    cpu: float | None
    memory_mb: int | None
    version: str
    state: str = Field(description="active | draining | lost")
    running: int = Field(description="Runs it holds now.")
    first_seen: datetime
    last_seen: datetime

    @classmethod
    def of(cls, worker: WorkerRecord, running: int) -> WorkerOut:
        return cls(**dataclasses.asdict(worker), running=running)


class NodeOut(BaseModel):
    name: str
    version: str
    leader: bool
    epoch: int | None = Field(default=None, description="The leader's epoch (fencing token).")
    lease_expires: datetime | None = Field(default=None, description="When the lease ends.")
    last_seen: datetime | None = None
    clock_offset: float | None = Field(
        default=None,
        description="Seconds the node's clock is behind (+) or ahead (-) of the database's.",
    )
    refuses_leadership: bool = Field(
        default=False, description="Its clock is too far off the database's to lead."
    )


class HealthOut(BaseModel):
    """The readiness of the server answering (as ``/readyz`` reports it): each fact is
    ``ok`` or says what is wrong."""

    node: str
    status: str
    database: str
    migrations: str
    clock: str


class ClusterOut(BaseModel):
    nodes: list[NodeOut]
    workers: list[WorkerOut]
    health: HealthOut = Field(description="The readiness of the server that answered.")


class ErrorOut(BaseModel):
    """Every refusal: a one-line reason, or FastAPI's list of fields that failed."""

    detail: str | list[dict[str, Any]]


# The refusals any endpoint may answer, documented for clients (and the fuzzer).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": description}
    for code, description in [
        (400, "The body is not JSON."),
        (401, "No valid token or session."),
        (403, "Not allowed to the caller's role, or no CSRF token with a session."),
        (404, "No such object."),
        (409, "Conflicts with the object's state."),
        (413, "The request body is too large."),
        (422, "A field is not valid (its name is in the reason)."),
        (429, "Too many failed logins: wait."),
        (503, "The database is unavailable for now: retry."),
    ]
}


# A paged list's answer (``GET /api/v1/jobs``): the headers that say how to go on.
PAGED_LIST_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "One page of the list.",
        "headers": {
            "Link": {
                "description": 'Where the next page is, as `<URL>; rel="next"` (RFC 8288); '
                "absent on the last page.",
                "schema": {"type": "string"},
            },
            "X-Total-Count": {
                "description": "How many items match, on all pages together.",
                "required": True,
                "schema": {"type": "integer", "minimum": 0},
            },
        },
    }
}
