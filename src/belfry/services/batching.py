"""Group commit: many concurrent callers, one transaction per batch.

A caller's ``submit`` returns only once the batch holding its item is committed, so an
acknowledgement still means "stored" (DESIGN.md guarantee 5). While one batch is being
written the next one fills up, so batches grow with load and cost nothing when idle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

Item = TypeVar("Item")


class GroupCommit(Generic[Item]):
    def __init__(self, write: Callable[[list[Item]], Awaitable[None]], linger: float = 0.0) -> None:
        self._write = write
        # Seconds a new batch waits for more items before it is written.
        self._linger = linger
        self._pending: list[tuple[Item, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, *items: Item) -> None:
        """Queue ``items`` for the next batch; return once that batch is committed."""
        if not items:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.extend((item, done) for item in items)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        await done

    async def _drain(self) -> None:
        if self._linger:
            await asyncio.sleep(self._linger)
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._write([item for item, _ in batch])
            except Exception as error:
                for done in {id(done): done for _, done in batch}.values():
                    if not done.done():
                        done.set_exception(error)
            else:
                for done in {id(done): done for _, done in batch}.values():
                    if not done.done():
                        done.set_result(None)
