"""Change signals: a change made on this server wakes its own services at once and, over
the peer link, those of the other servers sharing the database."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from belfry.ports.peer_signals import PeerLink, Topic

__all__ = ["Signals", "Topic"]


class Signals:
    def __init__(self, link: PeerLink | None = None) -> None:
        self._link = link
        self._listeners: defaultdict[Topic, list[Callable[[], None]]] = defaultdict(list)

    @property
    def linked(self) -> bool:
        """Whether other servers hear this one's signals (and it theirs)."""
        return self._link is not None

    def on(self, topic: Topic, listener: Callable[[], None]) -> None:
        self._listeners[topic].append(listener)

    def announce(self, topic: Topic) -> None:
        """Something changed here: wake this server's listeners and tell the others."""
        self._wake(topic)
        if self._link is not None:
            self._link.send(topic)

    def _wake(self, topic: Topic) -> None:
        for listener in self._listeners[topic]:
            listener()

    async def run_forever(self) -> None:
        """Wake this server's listeners for what the other servers announce."""
        if self._link is not None:
            await self._link.listen(self._wake)

    async def close(self) -> None:
        if self._link is not None:
            await self._link.close()
