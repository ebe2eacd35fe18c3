"""What the worker tests share: a reporter that records, orders, and process look-ups."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil

from belfry.core.execution import Outcome, RunOrder
from belfry.core.records import OutputChunk
from belfry.worker.executor import execute

SCHEDULED_FOR = datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)
EXECUTE_OPTIONS = {"output_head_bytes", "output_tail_bytes", "flush_interval", "tracker"}


class RecordingReporter:
    """Records what the executor reports, in order; can fail on purpose."""

    def __init__(self, *, fail_on_started: bool = False) -> None:
        self.calls: list[str] = []
        self.pid: int | None = None
        self.host: str | None = None
        self.batches: list[list[OutputChunk]] = []
        self.outcome: Outcome | None = None
        self._fail_on_started = fail_on_started
        self._changed = asyncio.Event()

    async def started(self, run_id: int, pid: int, host: str) -> None:
        self.calls.append("started")
        self.pid, self.host = pid, host
        if self._fail_on_started:
            raise ConnectionError("server unreachable")

    async def output(self, chunks: list[OutputChunk]) -> None:
        self.calls.append("output")
        self.batches.append(chunks)
        self._changed.set()

    async def finished(self, run_id: int, outcome: Outcome) -> None:
        self.calls.append("finished")
        self.outcome = outcome

    @property
    def chunks(self) -> list[OutputChunk]:
        return [chunk for batch in self.batches for chunk in batch]

    def text(self, stream: str | None = None) -> str:
        return "".join(c.data for c in self.chunks if stream is None or c.stream == stream)

    async def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Wait until the reported output matches ``pattern``."""
        async with asyncio.timeout(timeout):
            while True:
                if match := re.search(pattern, self.text()):
                    return match
                self._changed.clear()
                await self._changed.wait()


def order(command: str | list[str] | None, **fields: Any) -> RunOrder:
    values: dict[str, Any] = {
        "run_id": 42,
        "job": "ops/test-job",
        "scheduled_for": SCHEDULED_FOR,
        "attempt": 2,
        "command": command,
        "start_at": datetime.now(UTC) - timedelta(seconds=1),
    }
    values.update(fields)
    return RunOrder(**values)


async def run(command: str | list[str] | None, **fields: Any) -> tuple[Outcome, RecordingReporter]:
    """Execute ``command`` to its end; ``fields`` go to the RunOrder or to execute()."""
    options = {k: v for k, v in fields.items() if k in EXECUTE_OPTIONS}
    fields = {k: v for k, v in fields.items() if k not in EXECUTE_OPTIONS}
    reporter = RecordingReporter()
    outcome = await execute(
        order(command, **fields), reporter, asyncio.Event(), host="test-host", **options
    )
    return outcome, reporter


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie awaiting its reaper counts as dead: this
    machine's PID 1 may never reap orphans)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def with_marker(marker: str) -> list[psutil.Process]:
    """Live (non-zombie) processes with ``marker`` as one of their arguments."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and marker in (proc.info["cmdline"] or ()):
            found.append(proc)
    return found


async def wait_for_marker(marker: str, count: int = 1, timeout: float = 20.0) -> list[int]:
    """Wait until ``count`` live processes carry ``marker``; their pids."""
    deadline = time.monotonic() + timeout
    while len(found := with_marker(marker)) < count:
        assert time.monotonic() < deadline, f"no {count} processes with {marker!r}"
        await asyncio.sleep(0.02)
    return [proc.pid for proc in found]


async def wait_marker_gone(marker: str, timeout: float = 20.0) -> float:
    """Wait until no live process carries ``marker``; the seconds it took."""
    started = time.monotonic()
    while with_marker(marker):
        assert time.monotonic() - started < timeout, f"{marker!r} still running"
        await asyncio.sleep(0.01)
    return time.monotonic() - started
