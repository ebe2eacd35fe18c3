"""Workers: hello, heartbeats, claims and reports from agents, and the reaper that
declares silent workers lost (DESIGN.md "Workers"; the protocol is belfry.core.protocol).

A worker is known by its name. It is ``active`` or ``draining`` while it heartbeats; a
worker not heard from for ``LOST_AFTER_SECONDS`` is declared ``lost`` and its runs are
marked lost (retried when the job says ``on_worker_lost: retry``). It then has to say hello
again, and is told to kill what it still runs: by then its own lease has made it do so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from belfry.core.execution import Assignment, Outcome
from belfry.core.protocol import (
    LOST_AFTER_SECONDS,
    PROTOCOL_VERSION,
    Hello,
    Reports,
)
from belfry.core.records import JobRecord, OutputChunk, RunRecord, WorkerRecord
from belfry.core.states import ACTIVE_STATES, RunState
from belfry.ports.clock import Clock
from belfry.ports.store import Store
from belfry.services.placement import describe_placement, identity_of
from belfry.services.runs import FreeCapacity, RunService
from belfry.services.signals import Topic

__all__ = [
    "ProtocolMismatch",
    "UnknownWorker",
    "WorkerGone",
    "WorkerService",
]

log = logging.getLogger(__name__)

# A scheduled run this late with no worker to take it gets a reason saying why.
WAITING_AFTER = timedelta(seconds=5)


class ProtocolMismatch(ValueError):
    """The worker speaks another protocol version."""


class UnknownWorker(LookupError):
    """A worker that never said hello (to any server sharing this database)."""


class WorkerGone(LookupError):
    """The worker was declared lost: it must kill its runs and say hello again."""


@dataclass(frozen=True)
class HelloResult:
    worker: WorkerRecord
    # Runs the worker says it holds that are no longer its own: it must kill them.
    kills: list[int]


class WorkerService:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        runs: RunService,
        *,
        version: str,
        lost_after: float = LOST_AFTER_SECONDS,
        reap_interval: float = 2.0,
    ) -> None:
        self._store = store
        self._clock = clock
        self._runs = runs
        self._version = version
        self._lost_after = timedelta(seconds=lost_after)
        self._reap_interval = reap_interval
        # Since when the reaper has watched the heartbeats without a database failure.
        self._watching_since: datetime | None = None

    # -- what agents call -------------------------------------------------------------------
    async def hello(self, hello: Hello, allowed_pools: Sequence[str] | None) -> HelloResult:
        """Register (or re-register) a worker. ``allowed_pools`` are its token's (None: any).

        Runs the store gives this worker that the hello does not list are marked lost: the
        worker restarted, or never got the claim reply. Runs it lists that are no longer
        its own are returned to kill."""
        if hello.protocol != PROTOCOL_VERSION:
            raise ProtocolMismatch(
                f"this server (belfry {self._version}) speaks worker protocol "
                f"{PROTOCOL_VERSION}, the worker (belfry {hello.version}) speaks "
                f"{hello.protocol}: run workers of the same release as the servers"
            )
        if allowed_pools is not None:
            refused = sorted(set(hello.pools) - set(allowed_pools))
            if refused:
                raise PermissionError(
                    f"this worker token may not serve pool(s) {', '.join(refused)} "
                    f"(it is for: {', '.join(allowed_pools)})"
                )
        now = self._clock.now()
        worker = await self._store.save_worker(
            WorkerRecord(
                name=hello.name,
                host=hello.host,
                pools=list(hello.pools),
                tags=dict(hello.tags),
                slots=hello.capacity.slots,
                cpu=hello.capacity.cpu,
                memory_mb=hello.capacity.memory_mb,
                version=hello.version,
                state="active",
                first_seen=now,
                last_seen=now,
            )
        )
        held = {run.id for run in await self._runs.held_by(worker.name)}
        listed = set(hello.running)
        lost = await self._runs.lose_runs(
            worker.name, "the worker restarted without this run", keep=listed
        )
        if lost:
            log.warning(
                "worker %s came back without %d of its runs: marked lost", worker.name, lost
            )
        return HelloResult(worker, sorted(listed - held))

    async def claim(
        self,
        name: str,
        free: FreeCapacity,
        wait: float,
        allowed: Collection[str] | None = None,
    ) -> Assignment:
        """Runs to start and runs to kill; with ``wait``, a long poll that waits for work
        once if there is none, then looks at the worker again: a long poll outlasts the
        loss timeout (a worker that died mid-poll is lost by then) and a drain may begin.
        ``allowed``: the pools of the caller's token (None: any), as for every call."""
        worker = _acting(await self._live(name), allowed)
        if worker.state == "draining":
            kills = self._runs.take_kills(name)
            if not kills and wait > 0:
                # Drained by a person, the worker keeps polling: hold the poll (a kill or
                # an undrain rings) instead of answering at once, round after round.
                await self._runs.new_work.wait(wait)
                kills = self._runs.take_kills(name)
            return Assignment(kills=kills)
        assignment = await self._runs.claim(identity_of(worker), free)
        if assignment.orders or assignment.kills or wait <= 0:
            return assignment
        await self._runs.wait_for_work(wait)
        return await self.claim(name, free, 0, allowed)

    async def set_drain(self, name: str, drain: bool) -> WorkerRecord:
        """Ask a worker to take nothing new (its runs finish), or to take work again."""
        worker = await self._store.set_drain(name, drain)
        if worker is None:
            raise UnknownWorker(f"no worker {name!r}")
        if not drain:
            self._runs.signals.announce(Topic.RUNS)
        return worker

    async def heartbeat(
        self,
        name: str,
        running: Sequence[int],
        draining: bool,
        allowed: Collection[str] | None = None,
    ) -> list[int]:
        """Record the heartbeat; return the runs the worker must kill: kill requests, and
        runs it still runs that are no longer its own (lost, or ended elsewhere)."""
        if allowed is not None:
            _acting(await self._live(name), allowed)
        worker = await self._touch(name, "draining" if draining else "active")
        kills = set(self._runs.take_kills(worker.name))
        if running:
            held = await self._runs.held_by(worker.name)
            mine = {run.id for run in held}
            kills |= {run_id for run_id in running if run_id not in mine}
            # Kill requests made through another server replica reach it here.
            kills |= {run.id for run in held if run.kill_requested}
        return sorted(kills)

    async def report(
        self, name: str, reports: Reports, allowed: Collection[str] | None = None
    ) -> None:
        """Apply what a worker reports, in order: starts, output, finishes. Re-sent
        reports are applied once (compare-and-set transitions, unique output keys).
        Only reports on runs this worker holds count: a worker cannot write another's."""
        _acting(await self._live(name), allowed)
        held = {run.id for run in await self._runs.held_by(name)}
        # Each kind in one group commit: a batch of hundreds costs a few transactions.
        await self._runs.started_many(
            [(s.run_id, s.pid, s.host) for s in reports.started if s.run_id in held]
        )
        chunks = [
            OutputChunk(chunk.run_id, chunk.seq, chunk.stream, chunk.data, chunk.at)
            for chunk in reports.output
            if chunk.run_id in held
        ]
        if chunks:
            await self._runs.output(chunks)
        await self._runs.finished_many(
            [
                (
                    finished.run_id,
                    Outcome(RunState(finished.state), finished.exit_code, finished.reason),
                )
                for finished in reports.finished
                if finished.run_id in held
            ]
        )

    async def _live(self, name: str) -> WorkerRecord:
        # Read from the store, not remembered: another server sharing the database may
        # have declared it lost, or taken its heartbeat saying it drains (one indexed read).
        return self._checked(name, await self._store.get_worker(name))

    async def _touch(self, name: str, state: str | None) -> WorkerRecord:
        return self._checked(name, await self._store.touch_worker(name, self._clock.now(), state))

    def _checked(self, name: str, worker: WorkerRecord | None) -> WorkerRecord:
        if worker is None:
            raise UnknownWorker(f"no worker {name!r}: say hello first")
        if worker.state == "lost":
            raise WorkerGone(
                f"worker {name!r} was declared lost after {self._lost_after.total_seconds():g}s "
                "of silence: kill its runs and say hello again"
            )
        return worker

    # -- the reaper -------------------------------------------------------------------------
    async def run_forever(self) -> None:
        self._watching_since = None  # a new term: nothing watched yet
        while True:
            try:
                await self.reap_pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reaper pass failed")
            await asyncio.sleep(self._reap_interval)

    async def reap_pass(self) -> list[str]:
        """One pass of the leader's reaper: ``reap``, but declaring nobody lost until it
        has watched the heartbeats for the loss timeout without a database failure. While
        the database was out of reach (or no server led) heartbeats could not be recorded,
        so a worker's silence then says nothing about the worker."""
        now = self._clock.now()
        if self._watching_since is None:
            self._watching_since = now
        try:
            return await self.reap(declare=now - self._watching_since >= self._lost_after)
        except Exception:
            self._watching_since = None
            raise

    async def reap(self, *, declare: bool = True) -> list[str]:
        """Declare lost the workers silent for too long (unless not ``declare``) and mark
        their runs lost; say why runs wait that no live worker can take. Returns the
        workers declared lost."""
        now = self._clock.now()
        silent_since = now - self._lost_after
        # Active runs before workers: a run whose worker is lost by the time the workers
        # are read must be lost, whichever way it came to be held.
        active = await self._store.runs_in_states(sorted(ACTIVE_STATES))
        workers = await self._store.list_workers()
        silent = [w.name for w in workers if w.state != "lost" and w.last_seen < silent_since]
        declared = await self._store.mark_workers_lost(silent, silent_since) if declare else []
        for name in declared:
            lost = await self._runs.lose_runs(
                name,
                f"worker {name} stopped heartbeating for {self._lost_after.total_seconds():g}s",
            )
            log.warning("worker %s is lost; %d of its runs marked lost", name, lost)
        # A claim racing the declaration (worker checked just before, run taken just after
        # its runs were marked) would leave a run claimed for ever by a worker that is gone.
        gone = {w.name for w in workers if w.state == "lost"}
        for name in sorted({run.worker for run in active if run.worker in gone}):
            lost = await self._runs.lose_runs(name, f"worker {name} was declared lost")
            log.warning("%d runs were handed to worker %s after it was lost", lost, name)
        live = [w for w in workers if w.state != "lost" and w.name not in declared]
        await self._explain_waiting(live, now)
        return declared

    async def _explain_waiting(self, live: list[WorkerRecord], now: datetime) -> None:
        waiting = await self._store.due_runs(now - WAITING_AFTER, 1000)
        if not waiting:
            return
        jobs = await self._store.get_jobs(sorted({run.job_id for run in waiting}))
        by_name = {w.name: w for w in live}
        by_reason: dict[str, list[RunRecord]] = {}
        for run in waiting:
            job = jobs.get(run.job_id)
            if job is None:
                continue
            if run.target is not None:
                reason = _why_target_waits(job, run.target, by_name.get(run.target))
            else:
                reason = _why_any_waits(job, [w for w in live if identity_of(w).can_run(job)])
            if reason is None:
                continue  # busy, or queued behind the job's own run: it will start
            if run.reason != reason:
                by_reason.setdefault(reason, []).append(run)
        for reason, runs in by_reason.items():
            await self._store.note_waiting([run.id for run in runs], reason)


def _why_any_waits(job: JobRecord, takers: list[WorkerRecord]) -> str | None:
    """Why a run any of ``takers`` (the live workers that can run it) may take waits."""
    if not takers:
        return f"waiting: no live worker in {describe_placement(job)}"
    if all(w.state == "draining" for w in takers):
        return f"waiting: every worker of {describe_placement(job)} is draining"
    return None


def _why_target_waits(job: JobRecord, target: str, worker: WorkerRecord | None) -> str | None:
    """Why a run for ``target`` (``target: all``) waits; ``worker`` is it, if live."""
    if worker is None:
        return f"waiting: worker {target} is not live"
    if worker.state == "draining":
        return f"waiting: worker {target} is draining"
    if not identity_of(worker).can_run(job):
        return f"waiting: worker {target} is no longer in {describe_placement(job)}"
    return None


def _acting(worker: WorkerRecord, allowed: Collection[str] | None) -> WorkerRecord:
    """``worker``, if a token for ``allowed`` pools may act as it (None: any token may):
    a worker token cannot claim, beat or report for a worker of other pools."""
    if allowed is not None and not set(worker.pools) <= set(allowed):
        raise PermissionError(
            f"this token may not act as worker {worker.name!r} (pools "
            f"{', '.join(worker.pools)}; the token serves {', '.join(sorted(allowed)) or 'none'})"
        )
    return worker
