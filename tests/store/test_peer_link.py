"""The peer link (LISTEN/NOTIFY) between servers sharing a PostgreSQL database, and the
signals hub over it: real PostgreSQL, two links standing for two servers."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable

import psycopg
import pytest

from belfry.adapters.store.peer_link import PostgresPeerLink
from belfry.ports.peer_signals import Topic
from belfry.services.signals import Signals

# Generous: on a loaded test machine a notification can take a while; the link itself
# answers in milliseconds.
WAIT = 15.0


class Heard:
    """What one server's listener heard, and a way to wait for it."""

    def __init__(self) -> None:
        self.topics: Counter[Topic] = Counter()
        self._changed = asyncio.Event()

    def __call__(self, topic: Topic) -> None:
        self.topics[topic] += 1
        self._changed.set()

    async def until(self, done: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not done():
                self._changed.clear()
                await self._changed.wait()


@contextlib.asynccontextmanager
async def listening(link: PostgresPeerLink, heard: Callable[[Topic], None]) -> AsyncIterator[None]:
    task = asyncio.create_task(link.listen(heard))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await link.close()


async def _notify_as_another_server(pg_url: str, *payloads: str) -> None:
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as other:
        for payload in payloads:
            await other.execute("SELECT pg_notify('belfry', %s)", (payload,))


async def _until_arriving(link: PostgresPeerLink) -> None:
    async with asyncio.timeout(WAIT):
        while link.arriving is not True:
            await asyncio.sleep(0.02)


async def test_a_signal_reaches_the_other_server_and_not_its_sender(pg_url: str) -> None:
    first, second = PostgresPeerLink(pg_url), PostgresPeerLink(pg_url)
    heard_first, heard_second = Heard(), Heard()
    async with listening(first, heard_first), listening(second, heard_second):
        # Each server's own probe came back: the link works both ways.
        await _until_arriving(first)
        await _until_arriving(second)
        # Once arriving, nothing is heard but what is sent.
        heard_first.topics.clear()
        heard_second.topics.clear()
        first.send(Topic.JOBS)
        first.send(Topic.RUNS)
        await heard_second.until(lambda: heard_second.topics[Topic.RUNS] >= 1)
        await heard_second.until(lambda: heard_second.topics[Topic.JOBS] >= 1)
        second.send(Topic.ENDED)
        await heard_first.until(lambda: heard_first.topics[Topic.ENDED] >= 1)
        assert heard_first.topics == Counter({Topic.ENDED: 1})
        assert heard_second.topics == Counter({Topic.JOBS: 1, Topic.RUNS: 1})


async def test_the_hub_wakes_this_servers_listeners_and_the_others(pg_url: str) -> None:
    links = PostgresPeerLink(pg_url), PostgresPeerLink(pg_url)
    here, there = Signals(links[0]), Signals(links[1])
    woken_here: list[str] = []
    woken_there: list[str] = []
    here.on(Topic.RUNS, lambda: woken_here.append("runs"))
    ended_there = asyncio.Event()
    there.on(Topic.ENDED, lambda: (woken_there.append("ended"), ended_there.set()))
    tasks = [asyncio.create_task(hub.run_forever()) for hub in (here, there)]
    try:
        # The first wake-ups say "look, something may have changed while not listening".
        for link in links:
            await _until_arriving(link)
        assert woken_here
        woken_here.clear()
        ended_there.clear()
        here.announce(Topic.ENDED)
        async with asyncio.timeout(WAIT):
            await ended_there.wait()
        assert woken_here == []  # nobody here listens to ENDED
        here.announce(Topic.RUNS)
        assert woken_here == ["runs"]  # at once, in this process
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await here.close()
        await there.close()


async def test_a_link_that_cannot_reach_the_database_wakes_every_listener_each_second() -> None:
    # Nothing listens on port 1: each connection attempt is refused at once.
    link = PostgresPeerLink("postgresql://postgres@127.0.0.1:1/belfry")
    heard = Heard()
    async with listening(link, heard):
        await heard.until(lambda: min(heard.topics[topic] for topic in Topic) >= 2)
    assert link.arriving is False
    assert set(heard.topics) == set(Topic)


@pytest.mark.parametrize("body", ["someone-else jobs,unknown-topic", "no-topics-at-all"])
async def test_signals_of_a_newer_server_or_malformed_ones_are_ignored(
    pg_url: str, body: str
) -> None:
    link = PostgresPeerLink(pg_url)
    heard = Heard()
    async with listening(link, heard):
        await _until_arriving(link)
        heard.topics.clear()
        await _notify_as_another_server(pg_url, body, "someone-else runs")
        await heard.until(lambda: heard.topics[Topic.RUNS] >= 1)
    expected = Counter({Topic.RUNS: 1})
    if body.startswith("someone-else jobs"):
        expected[Topic.JOBS] = 1
    assert heard.topics == expected


async def test_a_listener_cut_off_by_the_database_listens_again_and_looks_meanwhile(
    pg_url: str,
) -> None:
    link = PostgresPeerLink(pg_url)
    heard = Heard()
    async with listening(link, heard):
        await _until_arriving(link)
        heard.topics.clear()
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
            # The listening connection, as a failover or an idle-session timeout ends it.
            cursor = await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query = 'LISTEN belfry'"
            )
            assert [row[0] for row in await cursor.fetchall()] == [True]
        # What changed while nobody listened is looked at: every topic is heard.
        await heard.until(lambda: all(heard.topics[topic] for topic in Topic))
        await _until_arriving(link)
        # And signals arrive again on the new connection.
        heard.topics.clear()
        await _notify_as_another_server(pg_url, "someone-else jobs")
        await heard.until(lambda: heard.topics[Topic.JOBS] >= 1)
