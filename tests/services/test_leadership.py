"""Leader election on a real PostgreSQL, with server clocks that disagree with it.

Due-ness is decided on the database's clock: each round measures the offset of the
server's clock and corrects it; a server more than 2 s off refuses the leadership.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from belfry.adapters.store import SqlStore
from belfry.core.records import Fence
from belfry.services.database_time import DatabaseTime
from belfry.services.leadership import LeaderElection

# The shared store fixture, on PostgreSQL only: the election is for servers sharing one.
pytestmark = [pytest.mark.postgres, pytest.mark.on_store("postgresql")]


class ShiftedClock:
    """The real time, off by ``shift``: a server whose clock is wrong."""

    def __init__(self, shift: float) -> None:
        self.shift = timedelta(seconds=shift)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.shift

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("not used by a single election round")


class Node:
    def __init__(self, store: SqlStore, name: str, shift: float) -> None:
        self.local = ShiftedClock(shift)
        self.time = DatabaseTime(self.local)
        self.terms: list[Fence | None] = []
        self.election = LeaderElection(
            store, self.time, name, "test", on_elected=self._elected, on_deposed=self._deposed
        )

    async def _elected(self, fence: Fence) -> None:
        self.terms.append(fence)

    async def _deposed(self) -> None:
        self.terms.append(None)


async def _database_now(store: SqlStore) -> datetime:
    return await store.touch_node("probe", "test", datetime.now(UTC))


async def test_a_server_whose_clock_is_off_refuses_to_lead(store: SqlStore) -> None:
    fast = Node(store, "fast:1", shift=5.0)
    await fast.election.step()
    assert not fast.election.leading and fast.terms == []
    assert fast.election.refusal is not None
    # 5 s, plus however slow the round trip was on a loaded machine.
    assert re.search(r"clock is 5\.\ds ahead of the database's", fast.election.refusal)
    # A server with a sane clock takes the leadership the broken one left alone.
    sane = Node(store, "sane:1", shift=0.0)
    await sane.election.step()
    assert sane.election.leading and sane.election.refusal is None
    # The cluster view shows each node's offset (recorded on its next round).
    await fast.election.step()
    await sane.election.step()
    offsets = {node.name: node.clock_offset for node in await store.list_nodes()}
    assert offsets["fast:1"] == pytest.approx(-5.0, abs=0.3)
    assert offsets["sane:1"] == pytest.approx(0.0, abs=0.3)


async def test_a_small_offset_is_corrected_to_the_database_clock(store: SqlStore) -> None:
    slow = Node(store, "slow:1", shift=-1.5)
    await slow.election.step()
    assert slow.election.leading
    # What the services read (the scheduler's "now") is the database's time, not the
    # server's own 1.5 s late clock.
    database_now = await _database_now(store)
    assert abs((slow.time.now() - database_now).total_seconds()) < 0.2
    assert abs((slow.local.now() - database_now).total_seconds()) > 1.3


async def test_a_leader_whose_clock_jumps_away_hands_over_at_once(store: SqlStore) -> None:
    first = Node(store, "first:1", shift=0.0)
    await first.election.step()
    assert first.election.leading
    first_term = first.terms[-1]
    second = Node(store, "second:1", shift=0.0)
    await second.election.step()
    assert not second.election.leading  # the lease is held
    first.local.shift = timedelta(seconds=-10)  # a clock step, 10 s back
    await first.election.step()
    assert not first.election.leading and first.terms[-1] is None
    assert first.election.refusal is not None and "behind" in first.election.refusal
    # It let the lease go: the other server takes over without waiting for it to expire,
    # under a new epoch, so the old leader's writes are fenced out.
    await second.election.step()
    assert second.election.leading
    assert first_term is not None and second.terms[-1] is not None
    assert second.terms[-1].epoch == first_term.epoch + 1
    # Once its clock is right again it may lead again (after the other lets go).
    first.local.shift = timedelta(0)
    await first.election.step()
    assert first.election.refusal is None and not first.election.leading
