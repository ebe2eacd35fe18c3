"""The peer link on PostgreSQL: LISTEN/NOTIFY on one channel.

Each server keeps one connection listening and one for sending. A signal is a
notification ``"<sender> <topic>,<topic>"``; a server ignores its own (it woke its
listeners when it sent). Every ``PROBE_EVERY`` seconds a server sends itself a probe: a
probe not back within ``PROBE_WAIT`` means signals do not arrive (a pooler in transaction
mode hands LISTEN to a connection nobody reads, a dropped connection TCP has not noticed
yet), and until one comes back, or while the link is down, every topic is heard every
``POLL_EVERY`` seconds: the listeners then look at the database as often as they would
without a link.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy.engine import URL

from belfry.adapters.store.factory import driver_url, postgresql_connection
from belfry.ports.peer_signals import Topic

__all__ = ["PostgresPeerLink"]

log = logging.getLogger(__name__)

CHANNEL = "belfry"
PROBE_EVERY = 10.0
PROBE_WAIT = 3.0
POLL_EVERY = 1.0
_PROBE = "probe"


class PostgresPeerLink:
    def __init__(self, database_url: str) -> None:
        url, self._options = postgresql_connection(driver_url(database_url))
        self._conninfo = _libpq_url(url)
        self._id = secrets.token_hex(6)  # tells this server's notifications from others'
        self._pending: set[str] = set()
        self._flushing: asyncio.Task[None] | None = None
        self._sender: psycopg.AsyncConnection[Any] | None = None
        # The flush and the probe both send: one connects at a time, and only once.
        self._sending = asyncio.Lock()
        # Whether this server's probes come back (False: listeners poll every second;
        # None: not known yet).
        self.arriving: bool | None = None

    # -- sending ------------------------------------------------------------------------------
    def send(self, topic: Topic) -> None:
        self._pending.add(topic.value)
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # the signals raised in this same turn travel together
        while self._pending:
            topics = ",".join(sorted(self._pending))
            self._pending.clear()
            await self._notify(topics)

    async def _notify(self, body: str) -> bool:
        """Send one notification (a second try on a fresh connection); False if it could
        not be sent: the others' listeners notice no probe of ours is missing, but their
        timers are the net for the signals lost while the database is away."""
        async with self._sending:
            for attempt in range(2):
                try:
                    if self._sender is None or self._sender.closed:
                        self._sender = await psycopg.AsyncConnection.connect(
                            self._conninfo, autocommit=True, **self._options
                        )
                    await self._sender.execute(
                        "SELECT pg_notify(%s, %s)", (CHANNEL, f"{self._id} {body}")
                    )
                    return True
                except psycopg.Error as error:
                    await self._drop_sender()
                    if attempt:
                        log.warning("could not signal the other servers: %s", error)
        return False

    async def _drop_sender(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            with contextlib.suppress(psycopg.Error):
                await sender.close()

    # -- listening ----------------------------------------------------------------------------
    async def listen(self, heard: Callable[[Topic], None]) -> None:
        while True:
            try:
                connection = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, **self._options
                )
            except (psycopg.Error, OSError) as error:
                self._not_arriving(f"cannot listen: {error}")
                _hear_all(heard)
                await asyncio.sleep(POLL_EVERY)
                continue
            try:
                await connection.execute(f"LISTEN {CHANNEL}")
                await self._serve(connection, heard)
            except (psycopg.Error, OSError) as error:
                self._not_arriving(f"listening stopped: {error}")
            finally:
                with contextlib.suppress(psycopg.Error):
                    await connection.close()
            _hear_all(heard)
            await asyncio.sleep(POLL_EVERY)

    async def _serve(
        self, connection: psycopg.AsyncConnection[Any], heard: Callable[[Topic], None]
    ) -> None:
        loop = asyncio.get_running_loop()
        # Whatever changed before LISTEN took effect was not heard: look once now.
        _hear_all(heard)
        probe = 0
        sent_at: float | None = None  # the outstanding probe's send time
        next_probe = loop.time()
        while True:
            now = loop.time()
            if sent_at is None and now >= next_probe:
                probe += 1
                next_probe = now + PROBE_EVERY
                if await self._notify(f"{_PROBE}{probe}"):
                    sent_at = now
            if sent_at is not None and now - sent_at > PROBE_WAIT:
                self._not_arriving(f"a probe did not come back within {PROBE_WAIT:g}s")
                sent_at = None
            if not self.arriving:
                _hear_all(heard)
                wait = POLL_EVERY
            elif sent_at is not None:
                wait = max(sent_at + PROBE_WAIT - now, 0.01)
            else:
                wait = max(next_probe - now, 0.01)
            async for note in connection.notifies(timeout=wait):
                sender, _, body = note.payload.partition(" ")
                if sender != self._id:
                    for name in body.split(","):
                        with contextlib.suppress(ValueError):  # a newer server's topic
                            heard(Topic(name))
                elif body == f"{_PROBE}{probe}":
                    sent_at = None
                    if not self.arriving:
                        log.info("signals from the other servers arrive")
                    self.arriving = True

    def _not_arriving(self, why: str) -> None:
        if self.arriving is not False:
            log.warning(
                "signals from the other servers do not arrive (%s): looking at the "
                "database every %gs instead",
                why,
                POLL_EVERY,
            )
        self.arriving = False

    async def close(self) -> None:
        if self._flushing is not None:
            with contextlib.suppress(Exception):
                await self._flushing
        await self._drop_sender()


def _hear_all(heard: Callable[[Topic], None]) -> None:
    for topic in Topic:
        heard(topic)


def _libpq_url(url: URL) -> str:
    """The URL as libpq reads it (psycopg takes no SQLAlchemy driver name)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
