"""The run service: hands due runs to workers, records what they report, kills, retries.

Overlap, pause and maintenance are decided here, when a run is about to start, because
that is when "is the previous run still active?" has its true answer. A run due in a group
in maintenance is skipped with the maintenance's reason (even one made before it began):
nothing new starts there, and runs already running finish. Jobs that allow overlap are
handed out up to ``claim_lead`` early so the worker can start them exactly on time.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from belfry.core.env_secrets import SealedSecret
from belfry.core.execution import Assignment, HttpRequest, Outcome, RunOrder
from belfry.core.jobs import OverlapPolicy
from belfry.core.maintenance import covering, maintenance_reason
from belfry.core.policies import OverlapVerdict, decide_overlap, retry_delay
from belfry.core.records import JobRecord, NewRun, OutputChunk, RunRecord, Transition, Trigger
from belfry.core.states import ACTIVE_STATES, Actor, RunState
from belfry.ports.clock import Clock
from belfry.ports.store import Store
from belfry.services.backfill import backfill_limit
from belfry.services.batching import GroupCommit
from belfry.services.metrics import Metrics
from belfry.services.placement import WorkerIdentity, fan_out, wants_workers
from belfry.services.secret_box import SecretBox, SecretUnreadable
from belfry.services.signals import Signals, Topic
from belfry.services.wakeups import RunWatchers, Wakeup

__all__ = ["PREPARE_AHEAD", "FreeCapacity", "RunService", "WorkerIdentity"]

# Runs are created and handed to workers this far ahead of their instant. Not a whole
# second: most schedules fire on whole seconds, so preparing the next occurrence half a
# second off the grid keeps that database work out of the current second's spawn burst.
PREPARE_AHEAD = timedelta(seconds=1.5)

log = logging.getLogger(__name__)

_RETRYABLE = frozenset({RunState.FAILED, RunState.TIMED_OUT, RunState.LOST})


@dataclass
class FreeCapacity:
    """What a worker has free: slots, cpu units, MiB of memory (None: no limit)."""

    slots: int | None = None
    cpu: float | None = None
    memory_mb: int | None = None

    def fits(self, job: JobRecord) -> bool:
        resources = job.spec.resources
        if self.slots is not None and self.slots < 1:
            return False
        if self.cpu is not None and resources.cpu is not None and resources.cpu > self.cpu:
            return False
        memory = resources.memory_mb
        return self.memory_mb is None or memory is None or memory <= self.memory_mb

    def take(self, job: JobRecord) -> None:
        resources = job.spec.resources
        if self.slots is not None:
            self.slots -= 1
        if self.cpu is not None and resources.cpu is not None:
            self.cpu -= resources.cpu
        memory = resources.memory_mb
        if self.memory_mb is not None and memory is not None:
            self.memory_mb -= memory


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
        recheck: float | None = None,
        secrets: SecretBox | None = None,
        metrics: Metrics | None = None,
        signals: Signals | None = None,
    ) -> None:
        """``signals``: the hub through which this service tells the others, here and on
        the other servers, that runs were made or ended, and hears when they were."""
        self._store = store
        self._clock = clock
        # Counts the starts, endings and skips this server records (``/metrics``).
        self._metrics = metrics or Metrics()
        self._claim_lead = claim_lead
        self._claim_batch = claim_batch
        # Opens the jobs' secret env values for the orders handed to workers.
        self._secrets = secrets
        self._spread = spread
        self.new_work = Wakeup()
        # Rung when runs end, here or on another server (the chain pass looks at once).
        self.runs_ended = Wakeup()
        self.signals = signals or Signals()
        self.signals.on(Topic.RUNS, self.new_work.ring)
        # A finish can free a queued run, and a retry is new work.
        self.signals.on(Topic.ENDED, self.new_work.ring)
        self.signals.on(Topic.ENDED, self.runs_ended.ring)
        self.watchers = RunWatchers()
        self._kills: dict[str, set[int]] = {}
        self._claimed: dict[int, RunRecord] = {}
        self._closing = False
        # Longest a long poll waits before looking at the store again (None: as long as
        # the next due run allows), for servers sharing a database with others.
        self._recheck = recheck
        # Reports are group-committed without waiting for company: the batches form while
        # a write is in progress. A 20 ms linger cost each report ~18 ms at a light load and
        # changed neither a burst's starts nor its transactions much (make bench-batching).
        self._started = GroupCommit[_Started](self._write_started)
        self._outputs = GroupCommit[OutputChunk](self._write_output)
        self._finished = GroupCommit[_Finished](self._write_finished)

    # -- triggers and kills -----------------------------------------------------------------
    async def trigger(self, job: JobRecord) -> list[RunRecord]:
        """Start ``job`` now, outside its schedule (``belfry run``): one run, or with
        ``target: all`` one run per live worker that can run it (one skipped run, saying
        why, when there is none). Returns the runs made, in id order."""
        now = self._clock.now()
        workers = await self._store.list_workers() if wants_workers(job) else []
        wanted = fan_out(
            job, [NewRun(job.id, now, trigger=Trigger.MANUAL, not_before=now)], workers, now
        )
        created = await self._store.create_runs(wanted, Actor.USER, now)
        self._metrics.recorded(created)  # born skipped when no worker can take it
        self.signals.announce(Topic.RUNS)
        return created

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
                self._metrics.recorded(changed)
                log.info(
                    "run %d of %s killed before it started", run.id, run.job, extra=_about(run)
                )
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
    async def claim_waiting(
        self, worker: WorkerIdentity, free: FreeCapacity, wait: float
    ) -> Assignment:
        """``claim``, as a long poll: if there is nothing now, wait up to ``wait`` seconds
        for work (a due run, a kill) and try once more."""
        assignment = await self.claim(worker, free)
        if assignment.orders or assignment.kills or wait <= 0:
            return assignment
        await self.wait_for_work(wait)
        return await self.claim(worker, free)

    def take_kills(self, worker: str) -> list[int]:
        """Kill requests waiting for ``worker`` (each handed out once)."""
        return sorted(self._kills.pop(worker, set()))

    async def claim(self, worker: WorkerIdentity, free: FreeCapacity | int | None) -> Assignment:
        """Runs for ``worker`` to start, within its ``free`` capacity (a number is free
        slots), and runs it must kill. Only runs of jobs it can run (pool and tags) and
        whose declared resources fit are handed to it; a run with a target (``target:
        all``) only to the worker of that name.

        Overlap is judged per target: a run for any worker against every active run of
        its job, a run targeted at a worker against the job's active runs on that worker.
        """
        if not isinstance(free, FreeCapacity):
            free = FreeCapacity(slots=free)
        kills = self.take_kills(worker.name)
        if free.slots == 0:
            return Assignment(kills=kills)
        now = self._clock.now()
        due = await self._store.due_runs(
            now + self._claim_lead, self._claim_batch, for_worker=worker.name
        )
        if not due:
            return Assignment(kills=kills)
        jobs = await self._store.get_jobs(sorted({run.job_id for run in due}))
        windows = await self._store.list_maintenance()
        # Backfill runs are paced against their job's active runs whatever its policy.
        backfilling = {run.job_id for run in due if run.trigger is Trigger.BACKFILL}
        guarded = [
            job_id
            for job_id, job in jobs.items()
            if job.spec.overlap is not OverlapPolicy.ALLOW or job_id in backfilling
        ]
        active_runs = (
            await self._store.runs_in_states(sorted(ACTIVE_STATES), guarded) if guarded else []
        )
        # Active runs by (job, None): on any worker, and by (job, worker): on that worker.
        active: Counter[tuple[int, str | None]] = Counter()
        # Of those, the backfill runs (a backfill's own limit counts only them).
        active_backfill: Counter[tuple[int, str | None]] = Counter()
        for held in active_runs:
            active.update(_overlap_keys(held.job_id, held.worker))
            if held.trigger is Trigger.BACKFILL:
                active_backfill.update(_overlap_keys(held.job_id, held.worker))
        waiting: Counter[tuple[int, str | None]] = Counter()
        waiting_backfill: Counter[tuple[int, str | None]] = Counter()
        changes: list[Transition] = []
        replace: list[int] = []
        for run in due:
            job = jobs.get(run.job_id)
            if job is None or not worker.can_run(job):
                continue
            if run.target is not None and run.target != worker.name:
                continue  # another worker's run of a target-all job
            if free.slots is not None and free.slots < 1:
                break
            window = covering(windows, job.spec.group)
            if window is not None:
                deferred = job.spec.on_maintenance == "defer"
                changes.append(self._skip(run, maintenance_reason(window, deferred=deferred)))
                continue
            manual = run.trigger is Trigger.MANUAL
            if job.paused and not manual:
                changes.append(self._skip(run, "paused"))
                continue
            policy = job.spec.overlap
            if run.trigger is Trigger.BACKFILL:
                if run.not_before > now:
                    continue  # paced: not before its instant
                key = (job.id, run.target)
                limit = backfill_limit(run.reason)
                if (limit.alone and active[key] > active_backfill[key]) or (
                    active_backfill[key] + waiting_backfill[key] >= limit.max_parallel
                ):
                    waiting_backfill[key] += 1  # waits its turn, in order, never skipped
                    continue
            elif policy is not OverlapPolicy.ALLOW and not manual:
                if run.not_before > now:
                    continue  # decided at its instant, when overlap has its true answer
                key = (job.id, run.target)
                decision = decide_overlap(
                    policy,
                    active=active[key],
                    waiting_ahead=waiting[key],
                    queue_max=job.spec.queue_max,
                )
                if decision.verdict is OverlapVerdict.SKIP:
                    changes.append(self._skip(run, decision.reason))
                    continue
                if decision.verdict is OverlapVerdict.WAIT:
                    waiting[key] += 1
                    continue
                if decision.verdict is OverlapVerdict.REPLACE:
                    replace += [
                        a.id
                        for a in active_runs
                        if a.job_id == job.id and run.target in (None, a.worker)
                    ]
            if not free.fits(job):
                continue  # another worker may have room; this one waits for a finish
            free.take(job)
            active.update(_overlap_keys(job.id, worker.name))
            if run.trigger is Trigger.BACKFILL:
                active_backfill.update(_overlap_keys(job.id, worker.name))
            changes.append(
                Transition(
                    run.id,
                    RunState.CLAIMED,
                    frozenset({RunState.SCHEDULED}),
                    Actor.WORKER,
                    # Why it waited no longer holds (an empty reason reads as none).
                    reason="" if (run.reason or "").startswith("waiting:") else None,
                    worker=worker.name,
                    host=worker.host,
                )
            )
        for run_id in replace:
            await self.kill(run_id)
        if not changes:
            return Assignment(kills=kills)
        changed = await self._store.transition(changes, now)
        self._metrics.recorded(changed)
        orders = []
        unstartable: list[Transition] = []
        for run in changed:
            self.watchers.changed(run.id)
            if run.state is RunState.SKIPPED:
                log.info("run %d of %s skipped: %s", run.id, run.job, run.reason, extra=_about(run))
            if run.state is RunState.CLAIMED:
                self._claimed[run.id] = run
                try:
                    orders.append(_order(run, jobs[run.job_id], self._secrets))
                except SecretUnreadable as error:
                    # Never run with a wrong environment: the run fails, saying why.
                    unstartable.append(
                        Transition(
                            run.id,
                            RunState.FAILED,
                            frozenset({RunState.CLAIMED}),
                            Actor.SCHEDULER,
                            reason=f"could not start: {error}",
                        )
                    )
        if unstartable:
            failed = await self._store.transition(unstartable, self._clock.now())
            self._metrics.recorded(failed)
            for run in failed:
                log.warning("run %d of %s %s", run.id, run.job, run.reason, extra=_about(run))
                self._claimed.pop(run.id, None)
                self.watchers.changed(run.id)
        # Stamped last: time spent in the database must not make the worker start late.
        return Assignment(orders=orders, kills=kills, issued_at=self._clock.now())

    def shut_down(self) -> None:
        """The server is stopping: end every long poll now, and wait no more."""
        self._closing = True
        self.new_work.ring()

    async def wait_for_work(self, timeout: float) -> None:
        """Sleep until a run may be due for claiming, or new work arrives."""
        if self._closing:
            return
        upcoming = await self._store.next_run_due()
        delay = timeout
        if upcoming is not None:
            seconds = (upcoming - self._claim_lead - self._clock.now()).total_seconds()
            # A due run still waiting (queued behind an active one, or an overlap-guarded
            # run inside the lead) is woken by the finish that frees it or by its instant.
            delay = min(
                timeout, seconds if seconds > 0 else min(1.0, self._claim_lead.total_seconds())
            )
        if self._recheck is not None:
            delay = min(delay, self._recheck)
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

    async def started_many(self, items: Sequence[tuple[int, int, str]]) -> None:
        """Several starts (run id, pid, host) in one group commit."""
        if items:
            await self._started.submit(*(_Started(*item) for item in items))

    async def finished_many(self, items: Sequence[tuple[int, Outcome]]) -> None:
        """Several endings in one group commit."""
        if items:
            await self._finished.submit(*(_Finished(*item) for item in items))

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
        self._metrics.recorded(changed)
        for run in changed:
            log.info(
                "run %d of %s started on %s (pid %s)",
                run.id,
                run.job,
                run.host,
                run.pid,
                extra=_about(run),
            )
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
        self._metrics.recorded(changed)
        for run in changed:
            log.info(
                "run %d of %s ended: %s (exit code %s)%s",
                run.id,
                run.job,
                run.state.value,
                run.exit_code,
                f": {run.reason}" if run.reason else "",
                extra=_about(run),
            )
            self.watchers.changed(run.id)
        self.signals.announce(Topic.ENDED)

    def _retry(
        self, run: RunRecord, job: JobRecord, state: RunState, now: datetime
    ) -> NewRun | None:
        if state not in _RETRYABLE:
            return None
        policy = job.spec.retries
        if state is RunState.LOST:
            # Lost with its worker: it may still have had effects, so only a job that says
            # so is retried, and then at least once.
            if job.spec.on_worker_lost == "fail":
                return None
            if policy.max < 1:
                policy = policy.model_copy(update={"max": 1})
        delay = retry_delay(policy, run.attempt, self._spread())
        if delay is None:
            return None
        return NewRun(
            job.id,
            run.scheduled_for,
            attempt=run.attempt + 1,
            trigger=Trigger.RETRY,
            not_before=now + delay,
            retry_of=run.id,
            # A targeted run's retry is for the same worker (and waits for it).
            target=run.target or "",
        )

    # -- recovery ---------------------------------------------------------------------------
    async def recover_lost(self, worker: WorkerIdentity, reason: str) -> int:
        """Mark the runs a (restarted) worker held as lost, retrying per policy."""
        return await self.lose_runs(worker.name, reason)

    async def held_by(self, worker: str) -> list[RunRecord]:
        """The active runs the store assigns to ``worker`` (read on every report batch
        and heartbeat: filtered in the database, not here)."""
        return await self._store.runs_in_states(sorted(ACTIVE_STATES), worker=worker)

    async def hand_back(self, worker: str, run_ids: Collection[int]) -> int:
        """``worker`` is stopping and gives up these claimed runs before starting them:
        they are scheduled again for another worker to take. Returns how many were."""
        if not run_ids:
            return 0
        reason = f"waiting: handed back unstarted by worker {worker} (stopping)"
        changed = await self._store.transition(
            [
                Transition(
                    run_id,
                    RunState.SCHEDULED,
                    frozenset({RunState.CLAIMED}),
                    Actor.WORKER,
                    reason,
                    worker=worker,
                )
                for run_id in run_ids
            ],
            self._clock.now(),
        )
        for run in changed:
            self._claimed.pop(run.id, None)
            self.watchers.changed(run.id)
        if changed:
            self.signals.announce(Topic.RUNS)
        return len(changed)

    async def lose_runs(self, worker: str, reason: str, keep: Collection[int] = ()) -> int:
        """Mark the active runs of ``worker`` (but those in ``keep``) as lost, each retried
        if its job says ``on_worker_lost: retry``. Returns how many were marked."""
        held = [run for run in await self.held_by(worker) if run.id not in keep]
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
        self._metrics.recorded(changed)
        for run in changed:
            log.warning("run %d of %s lost: %s", run.id, run.job, reason, extra=_about(run))
            self._claimed.pop(run.id, None)
            self.watchers.changed(run.id)
        if changed:
            self.signals.announce(Topic.ENDED)
        return len(changed)


def _about(run: RunRecord) -> dict[str, object]:
    """The fields every log line about a run carries (``--log-format``: JSON fields, or
    ``job=... run_id=...`` after the text), to find all of a run's lines at once."""
    return {"job": run.job, "run_id": run.id}


def _overlap_keys(job_id: int, worker: str | None) -> list[tuple[int, str | None]]:
    """What an active run of ``job_id`` held by ``worker`` counts against, for overlap."""
    return [(job_id, None)] if worker is None else [(job_id, None), (job_id, worker)]


def _order(run: RunRecord, job: JobRecord, secrets: SecretBox | None) -> RunOrder:
    """The order for ``run``, its job's secrets opened (and listed, to be masked in its
    output). Raises SecretUnreadable, naming the variable, if one does not open."""
    spec = job.spec
    env: dict[str, str] = {}
    for name, value in spec.env.items():
        if isinstance(value, str):
            env[name] = value
            continue
        if not isinstance(value, SealedSecret):  # apply stores secrets sealed, always
            raise SecretUnreadable(f"env.{name}: the stored secret is not sealed")
        if secrets is None:
            raise SecretUnreadable(f"env.{name}: this server has no secret key to open it")
        try:
            env[name] = secrets.open(value)
        except SecretUnreadable as error:
            raise SecretUnreadable(f"env.{name}: the secret {error}") from None
    hidden = tuple(env[name] for name, value in spec.env.items() if not isinstance(value, str))
    http = None
    if spec.http is not None:
        http = HttpRequest(
            url=spec.http.url,
            method=spec.http.method,
            headers=dict(spec.http.headers),
            body=spec.http.body,
            expect_status=tuple(spec.http.expect_status),
        )
    return RunOrder(
        run_id=run.id,
        job=run.job,
        scheduled_for=run.scheduled_for,
        attempt=run.attempt,
        command=spec.command,
        start_at=run.not_before,
        env=env,
        secrets=hidden,
        working_dir=spec.working_dir,
        timeout_seconds=spec.timeout.total_seconds() if spec.timeout else None,
        kill_grace_seconds=spec.kill_grace.total_seconds(),
        success_exit_codes=tuple(spec.success_exit_codes),
        failure_pattern=spec.failure_pattern,
        http=http,
        run_as=spec.run_as,
        cpu=spec.resources.cpu,
        memory_mb=spec.resources.memory_mb,
    )
