"""The worker that runs inside ``belfry server`` on one machine: it talks to the run
service directly instead of over HTTP, with the same protocol as a remote agent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from belfry.core.execution import Assignment, Outcome
from belfry.core.protocol import WorkerCapacity
from belfry.core.records import OutputChunk
from belfry.services.runs import FreeCapacity, RunService, WorkerIdentity

__all__ = ["EmbeddedLink"]


class EmbeddedLink:
    """Both ends a worker needs (a RunSource and a RunReporter) backed by the run service."""

    def __init__(
        self,
        runs: RunService,
        identity: WorkerIdentity,
        draining: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self._runs = runs
        self._identity = identity
        # Whether a person drained this worker (``belfry worker drain``), read per claim.
        self._draining = draining

    async def claim(self, free: WorkerCapacity, wait: float) -> Assignment:
        if self._draining is not None and await self._draining():
            kills = self._runs.take_kills(self._identity.name)
            if not kills and wait > 0:
                await self._runs.new_work.wait(wait)  # a kill or an undrain rings
                kills = self._runs.take_kills(self._identity.name)
            return Assignment(kills=kills)
        capacity = FreeCapacity(free.slots, free.cpu, free.memory_mb)
        return await self._runs.claim_waiting(self._identity, capacity, wait)

    async def started(self, run_id: int, pid: int, host: str) -> None:
        await self._runs.started(run_id, pid, host)

    async def output(self, chunks: list[OutputChunk]) -> None:
        await self._runs.output(chunks)

    async def finished(self, run_id: int, outcome: Outcome) -> None:
        await self._runs.finished(run_id, outcome)
