"""Where a worker gets its work: the server, in process (embedded) or over HTTP."""

from __future__ import annotations

from typing import Protocol

from belfry.core.execution import Assignment
from belfry.core.protocol import WorkerCapacity

__all__ = ["RunSource"]


class RunSource(Protocol):
    async def claim(self, free: WorkerCapacity, wait: float) -> Assignment:
        """Runs to start within ``free`` capacity (None fields: no limit) and runs to kill.

        Blocks up to ``wait`` seconds until there is something (a long poll), so work is
        handed out the moment it becomes due, with no polling tick on either side.
        """
        ...
