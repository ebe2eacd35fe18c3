"""A clock the services tests move by hand (the pure core and services take a Clock)."""

from __future__ import annotations

from datetime import datetime, timedelta

__all__ = ["FakeClock"]


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    async def sleep(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)
