"""Store contract: workers (hello, heartbeats, the reaper's compare-and-set) and the
reason a scheduled run waits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from belfry.adapters.store import SqlStore
from belfry.core.records import NewRun, Transition, WorkerRecord
from belfry.core.states import Actor, RunState
from tests.store.conftest import AddJob

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def _worker(name: str = "w1", **fields: Any) -> WorkerRecord:
    values: dict[str, Any] = {
        "name": name,
        "host": "host-1",
        "pools": ["default"],
        "tags": {},
        "slots": None,
        "cpu": None,
        "memory_mb": None,
        "version": "1.0",
        "state": "active",
        "first_seen": T0,
        "last_seen": T0,
    }
    return WorkerRecord(**(values | fields))


async def test_save_worker_creates_and_replaces_keeping_first_seen(store: SqlStore) -> None:
    created = await store.save_worker(
        _worker(
            pools=["web", "billing"],
            tags={"zone": "b", "region": "eu"},
            slots=4,
            cpu=2.5,
            memory_mb=2048,
        )
    )
    assert created == _worker(
        pools=["web", "billing"],
        tags={"region": "eu", "zone": "b"},
        slots=4,
        cpu=2.5,
        memory_mb=2048,
    )

    later = T0 + 30 * SECOND
    replaced = await store.save_worker(
        _worker(
            host="host-2",
            pools=["web"],
            tags={},
            version="1.1",
            state="active",
            first_seen=later,  # what the caller believes; the stored one wins
            last_seen=later,
        )
    )
    assert replaced == _worker(
        host="host-2", pools=["web"], version="1.1", first_seen=T0, last_seen=later
    )
    assert await store.list_workers() == [replaced]


async def test_save_worker_brings_a_lost_worker_back(store: SqlStore) -> None:
    await store.save_worker(_worker())
    assert await store.mark_workers_lost(["w1"], T0 + SECOND) == ["w1"]
    back = await store.save_worker(_worker(last_seen=T0 + 20 * SECOND))
    assert (back.state, back.last_seen) == ("active", T0 + 20 * SECOND)


async def test_get_worker_reads_one_worker_as_stored(store: SqlStore) -> None:
    assert await store.get_worker("w1") is None
    await store.save_worker(_worker(tags={"region": "eu"}))
    await store.save_worker(_worker("w2"))
    await store.touch_worker("w1", T0 + SECOND, "draining")
    assert await store.get_worker("w1") == _worker(
        tags={"region": "eu"}, state="draining", last_seen=T0 + SECOND
    )
    assert await store.mark_workers_lost(["w2"], T0 + SECOND) == ["w2"]
    assert await store.get_worker("w2") == _worker("w2", state="lost")


async def test_touch_worker_records_last_seen_and_state(store: SqlStore) -> None:
    await store.save_worker(_worker())
    touched = await store.touch_worker("w1", T0 + 3 * SECOND)
    assert touched == _worker(last_seen=T0 + 3 * SECOND)
    draining = await store.touch_worker("w1", T0 + 6 * SECOND, "draining")
    assert draining == _worker(state="draining", last_seen=T0 + 6 * SECOND)
    # Without a state, the state stays as it is.
    still = await store.touch_worker("w1", T0 + 9 * SECOND)
    assert still is not None and still.state == "draining"
    assert await store.list_workers() == [still]


async def test_touch_worker_of_an_unknown_worker_is_none(store: SqlStore) -> None:
    assert await store.touch_worker("nobody", T0) is None
    assert await store.touch_worker("nobody", T0, "active") is None
    assert await store.list_workers() == []


async def test_touch_worker_leaves_a_lost_worker_as_it_is(store: SqlStore) -> None:
    await store.save_worker(_worker())
    assert await store.mark_workers_lost(["w1"], T0 + 20 * SECOND) == ["w1"]
    lost = _worker(state="lost")
    assert await store.touch_worker("w1", T0 + 25 * SECOND, "active") == lost
    assert await store.touch_worker("w1", T0 + 26 * SECOND) == lost
    assert await store.list_workers() == [lost]


async def test_mark_workers_lost_is_a_compare_and_set_on_last_seen(store: SqlStore) -> None:
    for name in ("a", "b", "c"):
        await store.save_worker(_worker(name))
    # "b" was heard from after the reaper read the list, but before it marked.
    await store.touch_worker("b", T0 + 16 * SECOND)
    silent_since = T0 + 15 * SECOND
    declared = await store.mark_workers_lost(["c", "b", "a", "ghost"], silent_since)
    assert declared == ["a", "c"]
    states = {worker.name: worker.state for worker in await store.list_workers()}
    assert states == {"a": "lost", "b": "active", "c": "lost"}
    # Heard from exactly at silent_since is not silent "since" then.
    await store.save_worker(_worker("d", last_seen=silent_since))
    assert await store.mark_workers_lost(["d"], silent_since) == []


async def test_mark_workers_lost_returns_only_newly_lost(store: SqlStore) -> None:
    for name in ("a", "b"):
        await store.save_worker(_worker(name))
    assert await store.mark_workers_lost(["a"], T0 + SECOND) == ["a"]
    # A second reaper (another replica) racing on the same list declares only "b".
    assert await store.mark_workers_lost(["a", "b"], T0 + SECOND) == ["b"]
    assert await store.mark_workers_lost(["a", "b"], T0 + SECOND) == []
    assert await store.mark_workers_lost([], T0 + SECOND) == []
    lost = await store.list_workers()
    assert [(w.name, w.state, w.last_seen) for w in lost] == [
        ("a", "lost", T0),
        ("b", "lost", T0),
    ]


async def test_list_workers_is_ordered_by_name(store: SqlStore) -> None:
    assert await store.list_workers() == []
    for name in ("web-2", "batch-1", "web-10", "api"):
        await store.save_worker(_worker(name))
    names = [worker.name for worker in await store.list_workers()]
    assert names == ["api", "batch-1", "web-10", "web-2"]


async def test_note_waiting_sets_the_reason_only_of_scheduled_runs(
    store: SqlStore, add_job: AddJob
) -> None:
    job = await add_job("job", cursor=None, now=T0)
    waiting, claimed, skipped = await store.create_runs(
        [
            NewRun(job.id, T0),
            NewRun(job.id, T0 + SECOND),
            NewRun(job.id, T0 + 2 * SECOND, state=RunState.SKIPPED, reason="paused"),
        ],
        Actor.SCHEDULER,
        T0,
    )
    await store.transition(
        [
            Transition(
                claimed.id,
                RunState.CLAIMED,
                frozenset({RunState.SCHEDULED}),
                Actor.WORKER,
                worker="w1",
            )
        ],
        T0,
    )
    reason = "waiting: no live worker in pool default"
    await store.note_waiting([waiting.id, claimed.id, skipped.id, 99999], reason)
    runs = {run.id: run for run in await store.list_runs(job.id)}
    assert runs[waiting.id].reason == reason
    assert runs[waiting.id].state is RunState.SCHEDULED
    assert runs[claimed.id].reason is None
    assert runs[skipped.id].reason == "paused"
    # Noting is no transition: no event.
    assert [event.state for event in await store.run_events(waiting.id)] == [RunState.SCHEDULED]
    await store.note_waiting([], reason)


async def test_a_claim_with_an_empty_reason_clears_the_waiting_reason(
    store: SqlStore, add_job: AddJob
) -> None:
    job = await add_job("job", cursor=None, now=T0)
    first, second = await store.create_runs(
        [NewRun(job.id, T0), NewRun(job.id, T0 + SECOND)], Actor.SCHEDULER, T0
    )
    reason = "waiting: no live worker in pool default"
    await store.note_waiting([first.id, second.id], reason)

    def claim(run_id: int, why: str | None) -> Transition:
        return Transition(
            run_id,
            RunState.CLAIMED,
            frozenset({RunState.SCHEDULED}),
            Actor.WORKER,
            reason=why,
            worker="w1",
            host="host-1",
        )

    # One statement: a cleared reason ("") and a kept one (None) side by side.
    changed = await store.transition([claim(first.id, ""), claim(second.id, None)], T0)
    by_id = {run.id: run for run in changed}
    assert by_id[first.id].reason is None
    assert by_id[second.id].reason == reason
    stored = await store.get_run(first.id)
    assert stored is not None
    assert stored.reason is None
    assert (stored.state, stored.worker) == (RunState.CLAIMED, "w1")
    events = await store.run_events(first.id)
    assert [(event.state, event.reason) for event in events] == [
        (RunState.SCHEDULED, None),
        (RunState.CLAIMED, None),
    ]
