"""The peer-link port: how a server tells the other servers sharing its database that
something changed, so that none of them has to poll the database to find out."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Protocol

__all__ = ["PeerLink", "Topic"]


class Topic(StrEnum):
    """What changed (the listeners re-read the store: a signal carries no data)."""

    JOBS = "jobs"  # jobs, their pauses or maintenance: the leader's scheduler re-plans
    RUNS = "runs"  # runs made, handed back or released: long polls look for work
    ENDED = "ended"  # runs ended: chains and alerts look, queued runs may be free


class PeerLink(Protocol):
    def send(self, topic: Topic) -> None:
        """Tell the other servers, soon and without waiting (signals sent close together
        may travel as one)."""
        ...

    async def listen(self, heard: Callable[[Topic], None]) -> None:
        """Call ``heard`` for each topic another server sends, until cancelled. While the
        link is down or its signals do not arrive, call it for every topic every second
        (the listeners then poll, as without a link)."""
        ...

    async def close(self) -> None: ...
