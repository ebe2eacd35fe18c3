"""The worker that runs inside ``belfry server`` on one machine: it talks to the run
service directly instead of over HTTP, with the same protocol as a remote agent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial

from belfry.core.execution import Assignment, Outcome
from belfry.core.protocol import WorkerCapacity
from belfry.core.records import OutputChunk
from belfry.services.runs import FreeCapacity, RunService, WorkerIdentity

__all__ = ["EmbeddedLink"]

log = logging.getLogger(__name__)

# While the database is away, a report waits for it and is tried again, first after this
# many seconds, then twice as long each time up to the second figure.
RETRY_FIRST = 0.1
RETRY_LONGEST = 2.0


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

    # The RunReporter contract: a server outage must not stop the run. A remote agent
    # keeps its reports and sends them again; this one waits for the database (the run's
    # process goes on meanwhile; only its output waits). Each report is applied once
    # however often it is tried, so a try whose answer was lost is harmless.
    async def started(self, run_id: int, pid: int, host: str) -> None:
        await _until_stored(
            f"the start of run {run_id}", partial(self._runs.started, run_id, pid, host)
        )

    async def output(self, chunks: list[OutputChunk]) -> None:
        what = f"output of run {chunks[0].run_id}" if chunks else "output"
        await _until_stored(what, partial(self._runs.output, chunks))

    async def finished(self, run_id: int, outcome: Outcome) -> None:
        await _until_stored(
            f"the end of run {run_id}", partial(self._runs.finished, run_id, outcome)
        )


async def _until_stored(what: str, report: Callable[[], Awaitable[None]]) -> None:
    delay = RETRY_FIRST
    waited = False
    while True:
        try:
            await report()
        except ConnectionError as error:  # the store's StoreUnavailable
            if not waited:
                log.warning("%s waits for the database: %s", what, error)
                waited = True
            await asyncio.sleep(delay)
            delay = min(2 * delay, RETRY_LONGEST)
            continue
        if waited:
            log.info("%s stored: the database is back", what)
        return
