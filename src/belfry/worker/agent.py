"""The worker agent: asks for work, runs each order in its own process group, reports.

The same agent runs embedded in ``belfry server`` and as ``belfry worker`` on app hosts;
only its source and reporter differ (in process, or HTTP).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from belfry.core.execution import RunOrder
from belfry.core.protocol import WorkerCapacity
from belfry.worker.executor import execute, wait_for_start
from belfry.worker.process_tree import ProcessTracker, TreeWatcher
from belfry.worker.reporting import RunReporter
from belfry.worker.source import RunSource

__all__ = ["Agent"]

log = logging.getLogger(__name__)


@dataclass
class _Running:
    order: RunOrder
    task: asyncio.Task[None]
    kill: asyncio.Event
    # Past its start instant: its process may be up, so it can no longer be handed back.
    started: bool = False


class Agent:
    def __init__(
        self,
        source: RunSource,
        reporter: RunReporter,
        *,
        host: str,
        slots: int | None = None,
        cpu: float | None = None,
        memory_mb: int | None = None,
        poll_wait: float = 30.0,
        guardian: TreeWatcher | None = None,
    ) -> None:
        self._source = source
        self._reporter = reporter
        self._host = host
        self._capacity = WorkerCapacity(slots=slots, cpu=cpu, memory_mb=memory_mb)
        self._poll_wait = poll_wait
        self._running: dict[int, _Running] = {}
        self._slot_freed = asyncio.Event()
        self._draining = False
        # Set while no claim is in flight (one may bring orders after a drain began).
        self._between_claims = asyncio.Event()
        self._between_claims.set()
        # One scan of the host's processes serves every run's tree (not one scan per run).
        self._tracker = ProcessTracker(guardian=guardian)

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def running_ids(self) -> list[int]:
        return sorted(self._running)

    @property
    def draining(self) -> bool:
        return self._draining

    def free(self) -> WorkerCapacity:
        """What is left of the capacity, after the runs in flight (None: no limit)."""
        orders = [entry.order for entry in self._running.values()]
        slots = cpu = memory = None
        if self._capacity.slots is not None:
            slots = max(self._capacity.slots - len(orders), 0)
        if self._capacity.cpu is not None:
            cpu = max(self._capacity.cpu - sum(o.cpu or 0.0 for o in orders), 0.0)
        if self._capacity.memory_mb is not None:
            memory = max(self._capacity.memory_mb - sum(o.memory_mb or 0 for o in orders), 0)
        return WorkerCapacity(slots=slots, cpu=cpu, memory_mb=memory)

    async def run_forever(self) -> None:
        try:
            while True:
                if self._draining:
                    await asyncio.sleep(3600)  # claim nothing more; drain() ends us
                    continue
                free = self.free()
                if free.slots == 0:
                    # Full: still listen for kills, but wake as soon as a slot frees up.
                    self._slot_freed.clear()
                    wait = asyncio.create_task(self._slot_freed.wait())
                    try:
                        assignment = await self._source.claim(free, 0)
                        self.kill(assignment.kills)
                        await asyncio.wait({wait}, timeout=1.0)
                    finally:
                        wait.cancel()
                    continue
                self._between_claims.clear()
                try:
                    assignment = await self._source.claim(free, self._poll_wait)
                except asyncio.CancelledError:
                    raise
                except ConnectionError as error:  # no server: the link says more
                    log.warning("could not get work (%s); retrying in 1s", error)
                    await asyncio.sleep(1.0)
                    continue
                except Exception:
                    log.exception("could not get work; retrying in 1s")
                    await asyncio.sleep(1.0)
                    continue
                finally:
                    self._between_claims.set()
                self.kill(assignment.kills)
                received = datetime.now(UTC)
                for order in assignment.orders:
                    self._start(assignment.started_locally(order, received))
        finally:
            await self.stop()

    def kill(self, run_ids: list[int]) -> None:
        """Kill these runs if this agent runs them (their whole process trees)."""
        for run_id in run_ids:
            entry = self._running.get(run_id)
            if entry is not None:
                entry.kill.set()

    def _start(self, order: RunOrder) -> None:
        kill = asyncio.Event()
        task = asyncio.create_task(self._execute(order, kill), name=f"run-{order.run_id}")
        self._running[order.run_id] = _Running(order, task, kill)

    async def _execute(self, order: RunOrder, kill: asyncio.Event) -> None:
        try:
            # Waited here rather than in execute(), so that until its instant the run can be
            # handed back (hand_back) without a report; execute() then starts it at once.
            if await wait_for_start(order.start_at, kill):
                self._running[order.run_id].started = True
            await execute(order, self._reporter, kill, host=self._host, tracker=self._tracker)
        except Exception:
            log.exception(
                "run %d (%s): executor failed",
                order.run_id,
                order.job,
                extra={"job": order.job, "run_id": order.run_id},
            )
        finally:
            self._running.pop(order.run_id, None)
            self._slot_freed.set()

    async def hand_back(self) -> list[int]:
        """Stop claiming, and give up the runs claimed but not yet started (they have not
        reached their instant): returns their ids, for the server to schedule again.
        The runs already started go on (``drain`` or ``stop`` ends them)."""
        self._draining = True
        # A claim in flight may still bring orders: they are handed back too.
        await self._between_claims.wait()
        handed = []
        for run_id, entry in list(self._running.items()):
            if not entry.started:
                entry.task.cancel()
                del self._running[run_id]
                handed.append(run_id)
        return sorted(handed)

    async def drain(self, grace: float) -> None:
        """Claim nothing more; let the runs in flight finish for up to ``grace`` seconds,
        then kill what is left and wait for it to be reported."""
        self._draining = True
        tasks = [entry.task for entry in self._running.values()]
        if tasks:
            log.info("draining: waiting up to %gs for %d runs", grace, len(tasks))
            await asyncio.wait(tasks, timeout=grace)
        await self.stop()

    async def stop(self, grace: float = 0.0) -> None:
        """Kill every running run (their process trees) and wait for them to report."""
        for entry in self._running.values():
            entry.kill.set()
        tasks = [entry.task for entry in self._running.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=max(grace, 15.0))
