"""Leader election among the servers sharing a PostgreSQL database (DESIGN.md "HA").

One lease row holds the leader's name, its epoch and an expiry on the database's clock.
The leader renews it every ``renew_every`` seconds; the others try to take it every
``follow_every`` seconds and get it once it has expired (a crashed leader) or been let go
(a graceful stop), raising the epoch. Only the leader runs the scheduler, the reaper and
the pruner, and every scheduler write carries the epoch (``Fence``), checked by the
database in the same statement: a leader that was paused past its lease and wakes up
cannot write. A leader that cannot renew stops leading on its own when its lease runs
out, before anyone else can take over.

Each round also measures this server's clock against the database's (``DatabaseTime``):
within ``MAX_CLOCK_OFFSET`` the offset corrects the clock every service reads; beyond it
the server refuses the leadership and says why (logs, ``/readyz``, ``belfry cluster``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

from belfry.core.records import Fence, Leadership
from belfry.ports.store import Store
from belfry.services.database_time import MAX_CLOCK_OFFSET, DatabaseTime

__all__ = ["LeaderElection"]

log = logging.getLogger(__name__)


class LeaderElection:
    def __init__(
        self,
        store: Store,
        clock: DatabaseTime,
        node: str,
        version: str,
        *,
        on_elected: Callable[[Fence], Awaitable[None]],
        on_deposed: Callable[[], Awaitable[None]],
        lease: float = 3.0,
        renew_every: float = 1.0,
        follow_every: float = 0.25,
        max_clock_offset: float = MAX_CLOCK_OFFSET,
    ) -> None:
        self._store = store
        self._clock = clock
        self._node = node
        self._version = version
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self._lease = timedelta(seconds=lease)
        self._renew_every = renew_every
        self._follow_every = follow_every
        self._max_clock_offset = max_clock_offset
        self.fence: Fence | None = None
        # Why this server will not lead (its clock is off), or None.
        self.refusal: str | None = None
        # Monotonic time until which our lease surely holds (renewal time + lease).
        self._holds_until = 0.0

    @property
    def leading(self) -> bool:
        return self.fence is not None

    async def run_forever(self) -> None:
        try:
            while True:
                await self.step()
                await asyncio.sleep(self._renew_every if self.leading else self._follow_every)
        finally:
            await self.resign()

    async def step(self) -> None:
        """One round: renew or try to take the lease, and act on the answer."""
        asked = time.monotonic()
        try:
            # A round that hangs (a frozen database) is a failed round, not a renewal.
            async with asyncio.timeout(self._lease.total_seconds()):
                state = await self._ask()
        except Exception as error:
            # Cannot reach the database: keep leading only while the lease surely holds.
            if self.leading and time.monotonic() >= self._holds_until:
                log.error("lease not renewed (%s): stepping down", error or repr(error))
                await self._step_down()
            else:
                log.warning("leadership round failed: %s", error or repr(error))
            return
        if state is None:  # refused: the clock is off
            if self.leading:
                await self.resign()
            return
        if state.holder == self._node and state.valid:
            self._holds_until = asked + self._lease.total_seconds()
            fence = Fence(self._node, state.epoch)
            if fence != self.fence:
                if self.fence is not None:
                    await self._step_down()
                self.fence = fence
                log.info("leading under epoch %d", state.epoch)
                await self._on_elected(fence)
        elif self.leading:
            log.warning("%s leads now (epoch %d): stepping down", state.holder, state.epoch)
            await self._step_down()

    async def _ask(self) -> Leadership | None:
        """Record this node, measure its clock against the database's, and renew or try to
        take the lease; None when the clock is too far off to lead."""
        before = self._clock.local.now()
        database_now = await self._store.touch_node(
            self._node, self._version, before, self._clock.offset
        )
        # Even a broken clock is corrected for what this server still does (API, claims).
        offset = self._clock.observe(before, database_now, self._clock.local.now())
        if abs(offset) > self._max_clock_offset:
            self._refuse(offset)
            return None
        if self.refusal is not None:
            log.warning(
                "the clock is back within %gs of the database's (%+.3fs): may lead again",
                self._max_clock_offset,
                offset,
            )
            self.refusal = None
        return await self._store.claim_leadership(self._node, self._lease, self._clock.now())

    def _refuse(self, offset: float) -> None:
        side = "behind" if offset > 0 else "ahead of"
        refusal = (
            f"this server's clock is {abs(offset):.1f}s {side} the database's "
            f"(more than {self._max_clock_offset:g}s): it will not lead until the clock "
            "is fixed (NTP)"
        )
        if self.refusal is None:
            log.error("%s", refusal)
        self.refusal = refusal

    async def resign(self) -> None:
        """A graceful stop: stop leading and let the lease go, so another server takes over
        at once instead of after the lease."""
        if self.leading:
            await self._step_down()
            try:
                await self._store.release_leadership(self._node)
            except Exception as error:
                log.warning("could not let the lease go (%s); it expires on its own", error)

    async def _step_down(self) -> None:
        self.fence = None
        await self._on_deposed()
