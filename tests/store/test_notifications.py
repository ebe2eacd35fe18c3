"""Store contract: alert deliveries, channels, group settings and marks, on both databases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from belfry.adapters.store import SqlStore, open_store
from belfry.core.alerts import Alert, AlertKind, GroupSpec
from belfry.core.deliveries import AlertingWrites, ChannelWrite, DeliveryState, NewDelivery

T0 = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


def _new(key: str, job: str = "ops/a", run_id: int | None = 7) -> NewDelivery:
    alert = Alert(AlertKind.FAILURE, job, "failed with exit code 1", T0, run_id=run_id)
    return NewDelivery("hook", alert, key)


async def test_a_dedup_key_is_enqueued_once(store: SqlStore) -> None:
    first = await store.enqueue_deliveries([_new("k1"), _new("k2")], T0)
    again = await store.enqueue_deliveries([_new("k1"), _new("k3")], T0)
    assert [d.dedup_key for d in first] == ["k1", "k2"]
    assert [d.dedup_key for d in again] == ["k3"]
    stored = await store.list_deliveries(channel="hook")
    assert [d.dedup_key for d in stored] == ["k3", "k2", "k1"]  # newest first
    assert stored[0].alert.summary == "failed with exit code 1"
    assert stored[0].alert.run_id == 7
    assert await store.last_alerted("ops/a", AlertKind.FAILURE, "hook") == T0


async def test_two_takers_never_take_the_same_delivery(store: SqlStore, store_url: str) -> None:
    await store.enqueue_deliveries([_new(f"k{n}") for n in range(10)], T0)
    other = await open_store(store_url)
    try:
        taken = await asyncio.gather(
            store.take_deliveries(T0, timedelta(minutes=1), 10),
            other.take_deliveries(T0, timedelta(minutes=1), 10),
        )
    finally:
        await other.close()
    ids = [d.id for batch in taken for d in batch]
    assert len(ids) == len(set(ids)) == 10
    assert all(d.state is DeliveryState.SENDING and d.attempts == 1 for b in taken for d in b)
    # Under their lease nobody takes them again; after it (a taker died) they come back.
    assert await store.take_deliveries(T0 + timedelta(seconds=30), timedelta(minutes=1), 10) == []
    back = await store.take_deliveries(T0 + timedelta(minutes=2), timedelta(minutes=1), 10)
    assert len(back) == 10 and {d.attempts for d in back} == {2}


async def test_settled_deliveries_wait_for_their_next_attempt_and_prune(store: SqlStore) -> None:
    [one, two] = await store.enqueue_deliveries([_new("k1"), _new("k2", run_id=8)], T0)
    await store.take_deliveries(T0, timedelta(minutes=1), 10)
    await store.settle_delivery(one.id, DeliveryState.SENT, T0)
    later = T0 + timedelta(seconds=10)
    await store.settle_delivery(two.id, DeliveryState.PENDING, T0, "HTTP 500", later)
    assert await store.take_deliveries(T0 + timedelta(seconds=5), timedelta(minutes=1), 10) == []
    [retried] = await store.take_deliveries(later, timedelta(minutes=1), 10)
    assert retried.id == two.id and retried.last_error == "HTTP 500"
    assert [d.id for d in await store.list_deliveries(run_id=8)] == [two.id]
    assert [d.id for d in await store.list_deliveries(groups={"billing"})] == []
    # Pruning keeps what is still to be sent.
    assert await store.prune_deliveries(T0 + timedelta(days=1)) == 1
    assert [d.id for d in await store.list_deliveries()] == [two.id]


async def test_channels_and_group_settings_are_written_with_jobs(store: SqlStore) -> None:
    channel = ChannelWrite("hook", "sealed-token", "d" * 64, {"webhook": {"url": "https://x"}})
    group = GroupSpec(name="ops", notify=["hook"])
    await store.apply_jobs([], [], T0, alerting=AlertingWrites(channels=[channel], groups=[group]))
    [stored] = await store.list_channels()
    assert (stored.name, stored.sealed, stored.redacted) == (
        "hook",
        "sealed-token",
        {"webhook": {"url": "https://x"}},
    )
    assert [record.spec for record in await store.list_group_settings()] == [group]
    replaced = ChannelWrite("hook", "other", "e" * 64, {"apprise": "slack://***"})
    await store.apply_jobs([], [], T0 + timedelta(hours=1), alerting=AlertingWrites([replaced]))
    [stored] = await store.list_channels()
    assert stored.sealed == "other" and stored.created_at == T0
    await store.apply_jobs(
        [], [], T0, alerting=AlertingWrites(delete_channels=["hook"], delete_groups=["ops"])
    )
    assert await store.list_channels() == [] and await store.list_group_settings() == []


async def test_marks(store: SqlStore) -> None:
    assert await store.get_mark("finished") is None
    await store.set_mark("finished", T0)
    await store.set_mark("finished", T0 + timedelta(seconds=1))
    await store.set_mark("stall:1", T0)
    await store.set_mark("stall:20", T0)
    assert await store.get_mark("finished") == T0 + timedelta(seconds=1)
    assert [name for name, _ in await store.list_marks("stall:")] == ["stall:1", "stall:20"]
    await store.delete_mark("stall:1")
    assert [name for name, _ in await store.list_marks("stall:")] == ["stall:20"]
