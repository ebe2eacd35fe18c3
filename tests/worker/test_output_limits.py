"""Hostile output (binary, a 10 MB line, 50 MB) neither crashes nor stalls the executor.

Each test prints its wall time. The bounds asserted are generous: they catch a stall or a
quadratic scan (minutes), not a slow machine.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import psutil
import pytest

from belfry.core.states import RunState
from tests.worker.recording import run

HEAD = TAIL = 256 * 1024  # the executor's defaults
MARKER = re.compile(r"\[\.\.\. ([\d,]+) bytes of output omitted \.\.\.\]")


def stored_bytes(chunks_text: str) -> int:
    return len(chunks_text.encode("utf-8", "surrogatepass"))


@asynccontextmanager
async def watching_the_loop() -> AsyncIterator[dict[str, float]]:
    """Measures, while the block runs, the event loop's worst lag and the process's peak
    resident memory above what it was at the start."""
    process = psutil.Process()
    baseline = process.memory_info().rss
    seen = {"lag": 0.0, "rss_growth": 0.0}

    async def sample() -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            seen["lag"] = max(seen["lag"], time.monotonic() - before - 0.01)
            seen["rss_growth"] = max(seen["rss_growth"], process.memory_info().rss - baseline)

    sampler = asyncio.create_task(sample())
    try:
        yield seen
    finally:
        sampler.cancel()


async def timed(what: str, call: Callable[[], Awaitable[Any]]) -> tuple[Any, float]:
    started = time.monotonic()
    result = await call()
    took = time.monotonic() - started
    print(f"{what}: {took:.2f} s")
    return result, took


def omitted(text: str) -> int:
    match = MARKER.search(text)
    assert match, "no truncation marker"
    return int(match.group(1).replace(",", ""))


async def test_binary_output() -> None:
    async with watching_the_loop() as seen:
        (outcome, reporter), took = await timed(
            "5 MB of random bytes",
            lambda: run("head -c 5000000 /dev/urandom", failure_pattern="NEVER-THERE"),
        )
    print(f"worst loop lag {seen['lag'] * 1000:.0f} ms")
    assert outcome.state == RunState.SUCCEEDED
    stdout = reporter.text("stdout")
    assert "\ufffd" in stdout  # invalid UTF-8 replaced, not fatal
    assert stored_bytes(stdout) <= HEAD + TAIL
    assert omitted(reporter.text("belfry")) > 0
    assert took < 60
    assert seen["lag"] < 5


async def test_a_10_mb_line_without_newline_is_scanned_in_bounded_windows() -> None:
    # The match sits at the very end of one 10 MB line: the scan must reach it, and a scan
    # that re-read the line so far on each read (quadratic) would take minutes.
    command = "head -c 10000000 /dev/zero | tr '\\0' x; printf ERROR"
    async with watching_the_loop() as seen:
        (outcome, reporter), took = await timed(
            "10 MB single line", lambda: run(command, failure_pattern="x{100}ERROR")
        )
    print(f"worst loop lag {seen['lag'] * 1000:.0f} ms")
    assert outcome.state == RunState.FAILED
    assert outcome.exit_code == 0
    assert outcome.reason is not None and outcome.reason.startswith("failure_pattern matched")
    assert len(outcome.reason) < 300
    stdout = reporter.text("stdout")
    assert stored_bytes(stdout) == HEAD + TAIL
    assert stdout.endswith("xERROR")
    assert omitted(reporter.text("belfry")) == 10_000_005 - HEAD - TAIL
    # Re-searching the growing line on each 64 KiB read would take about 50 s here.
    assert took < 30
    assert seen["lag"] < 5


async def test_a_10_mb_line_without_a_match() -> None:
    command = "head -c 10000000 /dev/zero | tr '\\0' y"
    (outcome, reporter), took = await timed(
        "10 MB single line, no match", lambda: run(command, failure_pattern="ERROR|Traceback")
    )
    assert outcome.state == RunState.SUCCEEDED
    assert stored_bytes(reporter.text("stdout")) == HEAD + TAIL
    assert took < 60


@pytest.mark.timeout(300)
async def test_50_mb_of_output_in_bounded_memory() -> None:
    command = "yes 'a line of some ordinary output, 40 by.' | head -c 50000000"
    async with watching_the_loop() as seen:
        (outcome, reporter), took = await timed(
            "50 MB of lines", lambda: run(command, failure_pattern="Traceback")
        )
    print(
        f"worst loop lag {seen['lag'] * 1000:.0f} ms, "
        f"peak memory growth {seen['rss_growth'] / 2**20:.1f} MiB"
    )
    assert outcome.state == RunState.SUCCEEDED
    text = reporter.text()
    assert stored_bytes(reporter.text("stdout")) <= HEAD + TAIL
    assert stored_bytes(text) < HEAD + TAIL + 200  # plus the marker
    assert omitted(reporter.text("belfry")) == 50_000_000 - HEAD - TAIL
    # Holding the output would take 50 MiB or more; the executor keeps a few hundred KiB.
    assert seen["rss_growth"] < 25 * 2**20
    assert took < 120
    assert seen["lag"] < 5
