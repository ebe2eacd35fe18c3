"""Login rate limiting: a few failed logins per address and per user name, then a pause.

Kept in each server's memory: with N replicas an attacker gets N times the budget, still
a handful of guesses a minute against argon2 hashes and random first passwords.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta

from belfry.ports.clock import Clock

__all__ = ["LoginThrottle"]


class LoginThrottle:
    def __init__(
        self, clock: Clock, *, failures: int = 5, window: timedelta = timedelta(minutes=1)
    ) -> None:
        self._clock = clock
        self._failures = failures
        self._window = window
        self._recent: dict[str, deque[datetime]] = {}

    def wait_seconds(self, address: str, user: str) -> float:
        """0 if a login from ``address`` as ``user`` may be tried now, else how long to
        wait before the next try."""
        now = self._clock.now()
        waits = [self._wait(f"address:{address}", now), self._wait(f"user:{user}", now)]
        return max(waits)

    def failed(self, address: str, user: str) -> None:
        now = self._clock.now()
        for key in (f"address:{address}", f"user:{user}"):
            self._recent.setdefault(key, deque()).append(now)

    def succeeded(self, address: str, user: str) -> None:
        self._recent.pop(f"address:{address}", None)
        self._recent.pop(f"user:{user}", None)

    def _wait(self, key: str, now: datetime) -> float:
        recent = self._recent.get(key)
        if recent is None:
            return 0.0
        while recent and recent[0] <= now - self._window:
            recent.popleft()
        if not recent:
            del self._recent[key]
            return 0.0
        if len(recent) < self._failures:
            return 0.0
        return (recent[0] + self._window - now).total_seconds()
