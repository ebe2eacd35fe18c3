"""Store contract: the leadership lease, its epoch as a fencing token, and server nodes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from belfry.adapters.store import SqlStore
from belfry.core.jobs import JobSpec
from belfry.core.records import Fence, JobAdvance, JobWrite, NewRun

LEASE = timedelta(seconds=1)


def _now() -> datetime:
    return datetime.now(UTC)


async def test_one_leader_at_a_time_and_a_new_epoch_on_takeover(store: SqlStore) -> None:
    assert await store.read_leadership(_now()) is None
    first = await store.claim_leadership("a", LEASE, _now())
    assert (first.holder, first.epoch, first.valid) == ("a", 1, True)
    # Someone else cannot take a valid lease; its holder renews it under the same epoch.
    refused = await store.claim_leadership("b", LEASE, _now())
    assert (refused.holder, refused.epoch) == ("a", 1)
    renewed = await store.claim_leadership("a", LEASE, _now())
    assert (renewed.holder, renewed.epoch) == ("a", 1)
    assert renewed.expires_at >= first.expires_at
    # Expired: the next claimant takes over under a new epoch.
    await asyncio.sleep(1.2)
    taken = await store.claim_leadership("b", LEASE, _now())
    assert (taken.holder, taken.epoch, taken.valid) == ("b", 2, True)
    # A graceful stop lets it go at once.
    await store.release_leadership("a")  # not the holder: nothing happens
    assert (await store.claim_leadership("a", LEASE, _now())).holder == "b"
    await store.release_leadership("b")
    again = await store.claim_leadership("a", LEASE, _now())
    assert (again.holder, again.epoch) == ("a", 3)


async def test_a_deposed_leader_cannot_advance_a_cursor(store: SqlStore) -> None:
    t0 = datetime(2027, 1, 1, tzinfo=UTC)
    spec = JobSpec(name="job", schedule="* * * * * *", command="true")
    await store.apply_jobs([JobWrite(spec, t0)], [], t0)
    job = await store.get_job("default", "job")
    assert job is not None
    old = await store.claim_leadership("a", LEASE, _now())
    await asyncio.sleep(1.2)
    new = await store.claim_leadership("b", LEASE, _now())
    advance = JobAdvance(job.id, t0, t0 + timedelta(seconds=1), [NewRun(job.id, t0)])
    # The old leader's write fails in the statement itself; the new leader's applies.
    assert await store.advance_jobs([advance], _now(), Fence("a", old.epoch)) == 0
    assert await store.list_runs(job.id) == []
    assert await store.advance_jobs([advance], _now(), Fence("b", new.epoch)) == 1
    assert len(await store.list_runs(job.id)) == 1


async def test_nodes_are_listed_with_their_last_heartbeat(store: SqlStore) -> None:
    await store.touch_node("b:7711", "0.1.0", _now())
    await store.touch_node("a:7711", "0.1.0", _now())
    first = await store.list_nodes()
    await asyncio.sleep(0.05)
    await store.touch_node("a:7711", "0.2.0", _now())
    later = await store.list_nodes()
    assert [node.name for node in later] == ["a:7711", "b:7711"]
    assert later[0].version == "0.2.0"
    assert later[0].started_at == first[0].started_at
    assert later[0].last_seen >= first[0].last_seen
