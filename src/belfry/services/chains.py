"""The leader's chain pass: runs of the jobs that follow others (``after:``).

It reads the runs that ended since its mark, like the notifier, and for each job that
follows the ended run's job decides (``belfry.core.chains``) whether it runs now. A
chained run's occurrence key is the upstream run's ``scheduled_for``: deciding twice (a
re-read behind the mark, a failover, a retry of the upstream run that succeeds) inserts
it once.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime

from belfry.core.alerts import FAILURE_STATES
from belfry.core.chains import ChainOn, fan_in_complete, qualifies
from belfry.core.records import JobRecord, NewRun, RunRecord, Trigger
from belfry.core.states import Actor, RunState
from belfry.ports.clock import Clock
from belfry.ports.store import Store
from belfry.services.ended_runs import EndedRuns, repeat_passes
from belfry.services.wakeups import Wakeup

__all__ = ["ChainService"]

log = logging.getLogger(__name__)


def _counting_states(on: ChainOn) -> list[RunState]:
    return [state for state in RunState if qualifies(state, on)]


class ChainService:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        on_runs_created: Callable[[], None],
        interval: float = 5.0,
        wakeup: Wakeup | None = None,
    ) -> None:
        """``wakeup``: rung when runs end, on this server or another (a pass then, not
        seconds later); ``interval``: how often it looks anyway."""
        self._store = store
        self._clock = clock
        self._on_runs_created = on_runs_created
        self._interval = interval
        self._wakeup = wakeup or Wakeup()
        self._ended = EndedRuns(store, "chains")

    def wake(self) -> None:
        """Look now (a run just ended on this server)."""
        self._wakeup.ring()

    async def run_leader_forever(self) -> None:
        await repeat_passes(self.evaluate, self._wakeup, self._interval, "chain pass")

    async def evaluate(self) -> list[RunRecord]:
        """One pass; returns the chained runs it inserted."""
        now = self._clock.now()
        ended, mark = await self._ended.read(now)
        created: list[RunRecord] = []
        ran = [run for run in ended if run.state is not RunState.SKIPPED]
        if ran:
            followers = await self._followers()
            new_runs: list[NewRun] = []
            for run in ran:
                for job in followers.get(run.job, ()):
                    decided = await self._decide(job, run, now)
                    if decided is not None:
                        new_runs.append(decided)
            created = await self._store.create_runs(new_runs, Actor.SCHEDULER, now)
            for made in created:
                log.info("run %s of %s: %s", made.id, made.job, made.reason)
            if any(made.state is RunState.SCHEDULED for made in created):
                self._on_runs_created()
        await self._ended.advance(ended, mark, now)
        return created

    async def _followers(self) -> dict[str, list[JobRecord]]:
        """upstream GROUP/NAME -> the jobs that run after it."""
        followers: dict[str, list[JobRecord]] = defaultdict(list)
        for job in await self._store.chained_jobs():
            after = job.spec.after
            if after is not None:
                for key in after.keys(job.spec.group):
                    followers[key].append(job)
        return followers

    async def _decide(self, job: JobRecord, run: RunRecord, now: datetime) -> NewRun | None:
        """The run ``job`` gets because ``run`` ended (None: none now)."""
        after = job.spec.after
        assert after is not None and run.finished_at is not None
        if not qualifies(run.state, after.on):
            return None
        if run.state in FAILURE_STATES and await self._store.has_later_attempt(run):
            return None  # a retry follows: the upstream occurrence has not failed yet
        others = [key for key in after.keys(job.spec.group) if key != run.job]
        if others and not after.any:
            since = run.finished_at - after.within
            ended = await self._store.last_counting_ends(others, _counting_states(after.on), since)
            last = await self._store.last_chained_at(job.id)
            if not fan_in_complete(after, run.finished_at, ended, last):
                return None
        verb = {RunState.SUCCEEDED: "succeeded"}.get(run.state, run.state.value)
        reason = f"after {run.job} {verb} (run {run.id})"
        if job.paused:
            return NewRun(
                job.id,
                run.scheduled_for,
                trigger=Trigger.AFTER,
                state=RunState.SKIPPED,
                reason="paused",
                not_before=run.finished_at,
            )
        # ``not_before`` is when the set completed: fan-in counts upstream runs after it.
        return NewRun(
            job.id,
            run.scheduled_for,
            trigger=Trigger.AFTER,
            reason=reason,
            not_before=run.finished_at,
        )
