"""In-process wake-ups: how one service tells another that something changed, so that
nothing has to poll on a fixed tick."""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["RunWatchers", "Wakeup"]


class Wakeup:
    """A level-triggered doorbell: ``ring()`` wakes the current or next ``wait()``."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def ring(self) -> None:
        self._event.set()

    async def wait(self, timeout: float | None) -> bool:
        """Wait until rung or ``timeout`` seconds pass; True if it was rung."""
        if timeout is not None and timeout <= 0 and not self._event.is_set():
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._event.wait()
        rung = self._event.is_set()
        self._event.clear()
        return rung


class RunWatchers:
    """Lets readers of a run's output or state wait for its next change."""

    def __init__(self) -> None:
        self._waiters: dict[int, set[asyncio.Future[None]]] = {}

    def changed(self, run_id: int) -> None:
        for waiter in self._waiters.pop(run_id, set()):
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, run_id: int, timeout: float) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(run_id, set()).add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await waiter
        finally:
            waiters = self._waiters.get(run_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    self._waiters.pop(run_id, None)
