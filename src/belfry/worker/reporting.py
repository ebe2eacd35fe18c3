"""Where the executor sends what happens to a run (the agent forwards it to a server)."""

from __future__ import annotations

from typing import Protocol

from belfry.core.execution import Outcome
from belfry.core.records import OutputChunk

__all__ = ["RunReporter"]


class RunReporter(Protocol):
    """Receives one run's life from the executor.

    Contract, as the executor keeps it: for one run, calls are never concurrent and come in
    the order ``started`` (only if a process was spawned), ``output`` zero or more times,
    ``finished`` exactly once unless the executor itself is cancelled. Output chunks carry
    ``seq`` numbers 0, 1, 2, ... without gaps across all ``output`` calls of the run.

    An implementation should buffer and retry on its own (a server outage must not stop
    the run). If a call raises anyway, the executor kills the run's process group and lets
    the exception propagate, since it can no longer promise the run is recorded.
    """

    async def started(self, run_id: int, pid: int, host: str) -> None:
        """The run started on ``host``: a command as ``pid`` (its process group and session
        id too); an HTTP request made by the agent itself, as the agent's own pid."""
        ...

    async def output(self, chunks: list[OutputChunk]) -> None:
        """A batch of output chunks, in ``seq`` order."""
        ...

    async def finished(self, run_id: int, outcome: Outcome) -> None:
        """The run ended; all of its output has been passed to ``output`` before this."""
        ...
