"""The worker agent: asks for work, runs each order in its own process group, reports."""

from __future__ import annotations

import asyncio
import logging

from belfry.core.execution import RunOrder
from belfry.worker.executor import execute
from belfry.worker.reporting import RunReporter
from belfry.worker.source import RunSource

__all__ = ["Agent"]

log = logging.getLogger(__name__)


class Agent:
    def __init__(
        self,
        source: RunSource,
        reporter: RunReporter,
        *,
        host: str,
        slots: int | None = None,
        poll_wait: float = 30.0,
    ) -> None:
        self._source = source
        self._reporter = reporter
        self._host = host
        self._slots = slots
        self._poll_wait = poll_wait
        self._running: dict[int, tuple[asyncio.Task[None], asyncio.Event]] = {}
        self._slot_freed = asyncio.Event()

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def running_ids(self) -> list[int]:
        return sorted(self._running)

    def kill(self, run_ids: list[int]) -> None:
        """Kill these runs if this agent runs them (their whole process trees)."""
        self._apply_kills(run_ids)

    async def run_forever(self) -> None:
        try:
            while True:
                capacity = None if self._slots is None else self._slots - len(self._running)
                if capacity == 0:
                    # Full: still listen for kills, but wake as soon as a slot frees up.
                    self._slot_freed.clear()
                    wait = asyncio.create_task(self._slot_freed.wait())
                    try:
                        assignment = await self._source.claim(0, 0)
                        self._apply_kills(assignment.kills)
                        await asyncio.wait({wait}, timeout=1.0)
                    finally:
                        wait.cancel()
                    continue
                try:
                    assignment = await self._source.claim(capacity, self._poll_wait)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("could not get work; retrying in 1s")
                    await asyncio.sleep(1.0)
                    continue
                self._apply_kills(assignment.kills)
                for order in assignment.orders:
                    self._start(order)
        finally:
            await self.stop()

    def _apply_kills(self, run_ids: list[int]) -> None:
        for run_id in run_ids:
            entry = self._running.get(run_id)
            if entry is not None:
                entry[1].set()

    def _start(self, order: RunOrder) -> None:
        kill = asyncio.Event()
        task = asyncio.create_task(self._execute(order, kill), name=f"run-{order.run_id}")
        self._running[order.run_id] = (task, kill)

    async def _execute(self, order: RunOrder, kill: asyncio.Event) -> None:
        try:
            await execute(order, self._reporter, kill, host=self._host)
        except Exception:
            log.exception("run %d (%s): executor failed", order.run_id, order.job)
        finally:
            self._running.pop(order.run_id, None)
            self._slot_freed.set()

    async def stop(self, grace: float = 0.0) -> None:
        """Kill every running run (their process groups) and wait for them to report."""
        for _, kill in self._running.values():
            kill.set()
        tasks = [task for task, _ in self._running.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=max(grace, 15.0))
