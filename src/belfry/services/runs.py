"""The run service: hands due runs to workers, records what they report, kills, retries.

Overlap and pause are decided here, when a run is about to start, because that is when
"is the previous run still active?" has its true answer. Jobs that allow overlap are
handed out up to ``claim_lead`` early so the worker can start them exactly on time.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from belfry.core.execution import Assignment, Outcome, RunOrder
from belfry.core.jobs import OverlapPolicy
from belfry.core.policies import OverlapVerdict, decide_overlap, retry_delay
from belfry.core.records import JobRecord, NewRun, OutputChunk, RunRecord, Transition, Trigger
from belfry.core.states import ACTIVE_STATES, Actor, RunState
from belfry.ports.clock import Clock
from belfry.ports.store import Store
from belfry.services.batching import GroupCommit
from belfry.services.wakeups import RunWatchers, Wakeup

__all__ = ["PREPARE_AHEAD", "RunService", "WorkerIdentity"]

# Runs are created and handed to workers this far ahead of their instant. Not a whole
# second: most schedules fire on whole seconds, so preparing the next occurrence half a
# second off the grid keeps that database work out of the current second's spawn burst.
PREPARE_AHEAD = timedelta(seconds=1.5)
# Reports wait this long for company before being written: a burst of starts becomes a
# few transactions instead of hundreds, after the burst rather than during it.
REPORT_LINGER = 0.02

log = logging.getLogger(__name__)

_RETRYABLE = frozenset({RunState.FAILED, RunState.TIMED_OUT, RunState.LOST})


@dataclass(frozen=True)
class WorkerIdentity:
    name: str
    host: str


@dataclass(frozen=True)
class _Started:
    run_id: int
    pid: int
    host: str


@dataclass(frozen=True)
class _Finished:
    run_id: int
    outcome: Outcome


class RunService:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        claim_lead: timedelta = PREPARE_AHEAD,
        claim_batch: int = 1000,
        spread: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._clock = clock
        self._claim_lead = claim_lead
        self._claim_batch = claim_batch
        self._spread = spread
        self.new_work = Wakeup()
        self.watchers = RunWatchers()
        self._kills: dict[str, set[int]] = {}
        self._claimed: dict[int, RunRecord] = {}
        self._started = GroupCommit[_Started](self._write_started, linger=REPORT_LINGER)
        self._outputs = GroupCommit[OutputChunk](self._write_output, linger=REPORT_LINGER)
        self._finished = GroupCommit[_Finished](self._write_finished, linger=REPORT_LINGER)

    # -- triggers and kills -----------------------------------------------------------------
    async def trigger(self, job: JobRecord) -> RunRecord:
        """Start a run of ``job`` now, outside its schedule (``belfry run``)."""
        now = self._clock.now()
        created = await self._store.create_runs(
            [NewRun(job.id, now, trigger=Trigger.MANUAL, not_before=now)], Actor.USER, now
        )
        self.new_work.ring()
        return created[0]

    async def kill(self, run_id: int) -> RunRecord | None:
        """Kill a run: a waiting one ends at once, an active one is signalled to its worker.
        Returns the run as it is now, or None if it does not exist."""
        now = self._clock.now()
        run = await self._store.get_run(run_id)
        if run is None or run.state not in {RunState.SCHEDULED, *ACTIVE_STATES}:
            return run
        if run.state is RunState.SCHEDULED:
            changed = await self._store.transition(
                [
                    Transition(
                        run_id,
                        RunState.KILLED,
                        frozenset({RunState.SCHEDULED}),
                        Actor.USER,
                        reason="killed before it started",
                    )
                ],
                now,
            )
            if changed:
                self.watchers.changed(run_id)
                return changed[0]
            run = await self._store.get_run(run_id)
            if run is None or run.state not in ACTIVE_STATES:
                return run
        flagged = await self._store.request_kill(run_id, Actor.USER, now)
        if flagged is not None and flagged.worker is not None:
            self._kills.setdefault(flagged.worker, set()).add(run_id)
            self.new_work.ring()
        return flagged or run

    # -- handing out work -------------------------------------------------------------------
    async def claim(self, worker: WorkerIdentity, capacity: int | None) -> Assignment:
        """Runs for ``worker`` to start (at most ``capacity``) and runs it must kill."""
        kills = sorted(self._kills.pop(worker.name, set()))
        if capacity == 0:
            return Assignment(kills=kills)
        now = self._clock.now()
        due = await self._store.due_runs(now + self._claim_lead, self._claim_batch)
        if not due:
            return Assignment(kills=kills)
        jobs = await self._store.get_jobs(sorted({run.job_id for run in due}))
        guarded = [
            job_id for job_id, job in jobs.items() if job.spec.overlap is not OverlapPolicy.ALLOW
        ]
        active_runs = (
            await self._store.runs_in_states(sorted(ACTIVE_STATES), guarded) if guarded else []
        )
        active = Counter(run.job_id for run in active_runs)
        waiting: Counter[int] = Counter()
        changes: list[Transition] = []
        replace: list[int] = []
        for run in due:
            job = jobs.get(run.job_id)
            if job is None:
                continue
            if capacity is not None and len(changes) >= capacity:
                break
            manual = run.trigger is Trigger.MANUAL
            if job.paused and not manual:
                changes.append(self._skip(run, "paused"))
                continue
            policy = job.spec.overlap
            if policy is not OverlapPolicy.ALLOW and not manual:
                if run.not_before > now:
                    continue  # decided at its instant, when overlap has its true answer
                decision = decide_overlap(
                    policy,
                    active=active[job.id],
                    waiting_ahead=waiting[job.id],
                    queue_max=job.spec.queue_max,
                )
                if decision.verdict is OverlapVerdict.SKIP:
                    changes.append(self._skip(run, decision.reason))
                    continue
                if decision.verdict is OverlapVerdict.WAIT:
                    waiting[job.id] += 1
                    continue
                if decision.verdict is OverlapVerdict.REPLACE:
                    replace += [a.id for a in active_runs if a.job_id == job.id]
            active[job.id] += 1
            changes.append(
                Transition(
                    run.id,
                    RunState.CLAIMED,
                    frozenset({RunState.SCHEDULED}),
                    Actor.WORKER,
                    worker=worker.name,
                    host=worker.host,
                )
            )
        for run_id in replace:
            await self.kill(run_id)
        if not changes:
            return Assignment(kills=kills)
        changed = await self._store.transition(changes, now)
        orders = []
        for run in changed:
            self.watchers.changed(run.id)
            if run.state is RunState.CLAIMED:
                self._claimed[run.id] = run
                orders.append(_order(run, jobs[run.job_id]))
        return Assignment(orders=orders, kills=kills)

    async def wait_for_work(self, timeout: float) -> None:
        """Sleep until a run may be due for claiming, or new work arrives."""
        upcoming = await self._store.next_run_due()
        delay = timeout
        if upcoming is not None:
            seconds = (upcoming - self._claim_lead - self._clock.now()).total_seconds()
            # A due run still waiting (queued behind an active one, or an overlap-guarded
            # run inside the lead) is woken by the finish that frees it or by its instant.
            delay = min(
                timeout, seconds if seconds > 0 else min(1.0, self._claim_lead.total_seconds())
            )
        await self.new_work.wait(delay)

    def _skip(self, run: RunRecord, reason: str) -> Transition:
        return Transition(
            run.id,
            RunState.SKIPPED,
            frozenset({RunState.SCHEDULED}),
            Actor.SCHEDULER,
            reason=reason,
        )

    # -- what workers report (group-committed) ----------------------------------------------
    async def started(self, run_id: int, pid: int, host: str) -> None:
        await self._started.submit(_Started(run_id, pid, host))

    async def output(self, chunks: Sequence[OutputChunk]) -> None:
        await self._outputs.submit(*chunks)

    async def finished(self, run_id: int, outcome: Outcome) -> None:
        await self._finished.submit(_Finished(run_id, outcome))

    async def _write_started(self, items: list[_Started]) -> None:
        changed = await self._store.transition(
            [
                Transition(
                    item.run_id,
                    RunState.RUNNING,
                    frozenset({RunState.CLAIMED}),
                    Actor.WORKER,
                    host=item.host,
                    pid=item.pid,
                )
                for item in items
            ],
            self._clock.now(),
        )
        for run in changed:
            self.watchers.changed(run.id)

    async def _write_output(self, chunks: list[OutputChunk]) -> None:
        await self._store.append_output(chunks)
        for run_id in {chunk.run_id for chunk in chunks}:
            self.watchers.changed(run_id)

    async def _write_finished(self, items: list[_Finished]) -> None:
        now = self._clock.now()
        runs: dict[int, RunRecord] = {}
        for item in items:
            run = self._claimed.pop(item.run_id, None) or await self._store.get_run(item.run_id)
            if run is not None:
                runs[run.id] = run
        jobs = await self._store.get_jobs(sorted({run.job_id for run in runs.values()}))
        changes = []
        retries = []
        for item in items:
            outcome = item.outcome
            changes.append(
                Transition(
                    item.run_id,
                    outcome.state,
                    frozenset(ACTIVE_STATES),
                    Actor.WORKER,
                    reason=outcome.reason,
                    exit_code=outcome.exit_code,
                )
            )
            run = runs.get(item.run_id)
            job = jobs.get(run.job_id) if run else None
            if run is not None and job is not None:
                retry = self._retry(run, job, outcome.state, now)
                if retry is not None:
                    retries.append(retry)
        changed = await self._store.transition(changes, now, retries)
        for run in changed:
            self.watchers.changed(run.id)
        # A finish can free a queued run, and a retry is new work.
        self.new_work.ring()

    def _retry(
        self, run: RunRecord, job: JobRecord, state: RunState, now: datetime
    ) -> NewRun | None:
        if state not in _RETRYABLE:
            return None
        delay = retry_delay(job.spec.retries, run.attempt, self._spread())
        if delay is None:
            return None
        return NewRun(
            job.id,
            run.scheduled_for,
            attempt=run.attempt + 1,
            trigger=Trigger.RETRY,
            not_before=now + delay,
        )

    # -- recovery ---------------------------------------------------------------------------
    async def recover_lost(self, worker: WorkerIdentity, reason: str) -> int:
        """Mark the runs a (restarted) worker held as lost, retrying per policy."""
        held = [
            run
            for run in await self._store.runs_in_states(sorted(ACTIVE_STATES))
            if run.worker == worker.name
        ]
        if not held:
            return 0
        now = self._clock.now()
        jobs = await self._store.get_jobs(sorted({run.job_id for run in held}))
        retries = [
            retry
            for run in held
            if run.job_id in jobs
            and (retry := self._retry(run, jobs[run.job_id], RunState.LOST, now)) is not None
        ]
        changed = await self._store.transition(
            [
                Transition(
                    run.id, RunState.LOST, frozenset(ACTIVE_STATES), Actor.REAPER, reason=reason
                )
                for run in held
            ],
            now,
            retries,
        )
        if retries:
            self.new_work.ring()
        return len(changed)


def _order(run: RunRecord, job: JobRecord) -> RunOrder:
    spec = job.spec
    assert spec.command is not None  # HTTP jobs are rejected at validation for now
    return RunOrder(
        run_id=run.id,
        job=run.job,
        scheduled_for=run.scheduled_for,
        attempt=run.attempt,
        command=spec.command,
        start_at=run.not_before,
        env=dict(spec.env),
        working_dir=spec.working_dir,
        timeout_seconds=spec.timeout.total_seconds() if spec.timeout else None,
        kill_grace_seconds=spec.kill_grace.total_seconds(),
        success_exit_codes=tuple(spec.success_exit_codes),
        failure_pattern=spec.failure_pattern,
    )
