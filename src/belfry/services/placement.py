"""Placement: which workers may take a job's runs (pool and tags), and which workers the
runs are for (the job's ``target``).

``target: any`` (the default): one run per occurrence, taken by any live worker that can
run the job (its pool and tags). ``target: all``: one run per live worker that can run the
job, each its own record with ``target`` set to that worker's name, so each worker's run
has its own state, output, retries and overlap; the occurrence key includes the target, so
each worker still gets at most one run per occurrence.

The set of workers is decided when the runs are made (at the occurrence, or a manual
trigger): a worker is live if it is ``active`` (not draining, not lost) and was heard from
within the loss timeout. A worker joining later does not get that occurrence; a targeted
run whose worker goes away waits for it to come back (and says so), as does its retry.
When no worker is live for a ``target: all`` occurrence, it is recorded as one skipped
run with the reason, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from belfry.core.protocol import LOST_AFTER_SECONDS
from belfry.core.records import JobRecord, NewRun, WorkerRecord
from belfry.core.states import RunState

__all__ = [
    "WorkerIdentity",
    "describe_placement",
    "fan_out",
    "identity_of",
    "is_live",
    "wants_workers",
]

_LOST_AFTER = timedelta(seconds=LOST_AFTER_SECONDS)


@dataclass(frozen=True)
class WorkerIdentity:
    """Who claims runs: a worker's name and host, and which jobs it may run (those of its
    pools whose tags it carries)."""

    name: str
    host: str
    pools: tuple[str, ...] = ("default",)
    tags: tuple[tuple[str, str], ...] = ()

    def can_run(self, job: JobRecord) -> bool:
        tags = dict(self.tags)
        return job.spec.pool in self.pools and all(
            tags.get(key) == value for key, value in job.spec.tags.items()
        )


def identity_of(worker: WorkerRecord) -> WorkerIdentity:
    return WorkerIdentity(
        name=worker.name,
        host=worker.host,
        pools=tuple(worker.pools),
        tags=tuple(sorted(worker.tags.items())),
    )


def describe_placement(job: JobRecord) -> str:
    """Where the job may run, in words: ``pool P[, tag k=v]...``."""
    tags = "".join(f", tag {k}={v}" for k, v in sorted(job.spec.tags.items()))
    return f"pool {job.spec.pool}{tags}"


def wants_workers(job: JobRecord) -> bool:
    """Whether making the job's runs needs the list of workers."""
    return job.spec.target == "all"


def is_live(worker: WorkerRecord, now: datetime) -> bool:
    """Active (neither draining nor lost) and heard from within the loss timeout."""
    return worker.state == "active" and worker.last_seen >= now - _LOST_AFTER


def fan_out(
    job: JobRecord, runs: Sequence[NewRun], workers: Sequence[WorkerRecord], now: datetime
) -> list[NewRun]:
    """The runs to insert for ``runs`` (one per occurrence) of ``job``.

    For ``target: any``, and for skips, the runs themselves. For ``target: all``, each run
    to start becomes one run per live worker that can run the job, targeted at it (ordered
    by worker name); with no such worker, one skipped run saying so.
    """
    if not wants_workers(job):
        return list(runs)
    targets = sorted(w.name for w in workers if is_live(w, now) and identity_of(w).can_run(job))
    made: list[NewRun] = []
    for run in runs:
        if run.state is not RunState.SCHEDULED:
            made.append(run)
        elif targets:
            made += [replace(run, target=name) for name in targets]
        else:
            made.append(
                replace(
                    run,
                    state=RunState.SKIPPED,
                    reason=f"target all: no live worker in {describe_placement(job)}",
                )
            )
    return made
