"""The worker protocol: what ``belfry worker`` and a server say to each other over HTTP.

Both ends import these models, so they cannot disagree on a field. A worker says hello
with its ``protocol`` number; a server that speaks another one refuses it (HTTP 426) with a
message saying which versions to run. Every call after the hello names the worker; a
worker the server has declared lost gets HTTP 410 and must kill its runs and say hello
again.

Timing (DESIGN.md "Workers"): a worker heartbeats every ``HEARTBEAT_SECONDS``; a server
marks the runs of a worker it has not heard from for ``LOST_AFTER_SECONDS`` as lost; a
worker that has reached no server for ``LEASE_SECONDS`` kills its runs itself. The lease
is shorter than the loss timeout, so a run marked lost (and perhaps retried) never has a
twin still running.

Reports are idempotent: a re-sent start, output chunk or finish is applied once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from belfry.core.execution import RunOrder

__all__ = [
    "HEARTBEAT_SECONDS",
    "LEASE_SECONDS",
    "LOST_AFTER_SECONDS",
    "PROTOCOL_VERSION",
    "ChunkReport",
    "ClaimReply",
    "ClaimRequest",
    "FinishedReport",
    "Heartbeat",
    "HeartbeatReply",
    "Hello",
    "Reports",
    "StartedReport",
    "Welcome",
    "WorkerCapacity",
]

# Bump when a message changes incompatibly; servers refuse workers of another version.
# 2: orders carry the secret values the worker must mask in the output (a worker of
# version 1 would ignore them and let secrets through).
PROTOCOL_VERSION = 2
HEARTBEAT_SECONDS = 3.0
LEASE_SECONDS = 10.0
LOST_AFTER_SECONDS = 15.0
# The longest a claim may wait for work (a long poll), in seconds.
MAX_CLAIM_WAIT = 30.0


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkerCapacity(_Message):
    """How much a worker can run at once (None: no limit), or how much of it is free."""

    slots: int | None = Field(default=None, ge=0)
    cpu: float | None = Field(default=None, ge=0)
    memory_mb: int | None = Field(default=None, ge=0)


class Hello(_Message):
    """``POST /api/v1/workers/hello``: a worker (re)joins; answered with a Welcome."""

    name: str = Field(min_length=1, max_length=200)
    host: str
    pools: list[str] = Field(min_length=1)
    tags: dict[str, str] = Field(default_factory=dict)
    capacity: WorkerCapacity = Field(default_factory=WorkerCapacity)
    version: str
    protocol: int
    # Runs it still holds (after a server failover): the server keeps them assigned to it.
    running: list[int] = Field(default_factory=list)


class Welcome(_Message):
    name: str
    heartbeat_seconds: float = HEARTBEAT_SECONDS
    lease_seconds: float = LEASE_SECONDS
    server_version: str
    # Of the runs the hello listed, those no longer this worker's: kill them.
    kills: list[int] = Field(default_factory=list)


class ClaimRequest(_Message):
    """``POST /api/v1/workers/{name}/claim``: runs to start, within ``free`` capacity."""

    free: WorkerCapacity = Field(default_factory=WorkerCapacity)
    wait: float = Field(default=0.0, ge=0.0, le=MAX_CLAIM_WAIT)


class ClaimReply(_Message):
    orders: list[RunOrder] = Field(default_factory=list)
    kills: list[int] = Field(default_factory=list)
    # The server's time when it answered: orders start relative to it (clock skew).
    server_time: datetime | None = None


class Heartbeat(_Message):
    """``POST /api/v1/workers/{name}/heartbeat``."""

    running: list[int] = Field(default_factory=list)
    draining: bool = False


class HeartbeatReply(_Message):
    # Runs to kill: kill requests, and runs the worker holds that are no longer its own.
    kills: list[int] = Field(default_factory=list)


class StartedReport(_Message):
    run_id: int
    pid: int
    host: str


class ChunkReport(_Message):
    run_id: int
    seq: int = Field(ge=0)
    stream: Literal["stdout", "stderr", "belfry"]
    data: str
    at: datetime


class FinishedReport(_Message):
    run_id: int
    state: Literal["succeeded", "failed", "timed_out", "killed", "lost"]
    exit_code: int | None = None
    reason: str | None = None


class Reports(_Message):
    """``POST /api/v1/workers/{name}/reports``: what happened to runs, in order: starts,
    then output, then finishes. Applied once however often it is sent."""

    started: list[StartedReport] = Field(default_factory=list)
    output: list[ChunkReport] = Field(default_factory=list)
    finished: list[FinishedReport] = Field(default_factory=list)
