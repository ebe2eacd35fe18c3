"""A run's output on its way to the reporter: secrets masked, scanned, capped, then sent
in numbered batches.

Shared by the shell and the HTTP executor, so both mask, cap, scan and number output alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime

from belfry.core.output import MARKER_STREAM, FailureScanner, OutputLimiter
from belfry.core.output_masking import SecretMasker
from belfry.core.records import OutputChunk
from belfry.worker.reporting import RunReporter

__all__ = ["FLUSH_CHARS", "RunOutput"]

# A batch is sent early once this much text is waiting, and no chunk grows past it by merging.
FLUSH_CHARS = 64 * 1024


class RunOutput:
    """A run's output between flushes.

    The job's ``secrets`` are masked first, so neither the stored output nor a failure
    reason ever shows one (text that may be the start of a secret waits for the next write
    or the end). Everything written is then fed to the failure scanner, and only what the
    limiter keeps is queued, so memory stays bounded whatever the run writes. ``pump``
    sends the queue to the reporter in batches: when ``flush_interval`` has passed since
    the first waiting piece, or at once when ``FLUSH_CHARS`` are waiting.
    """

    def __init__(
        self,
        run_id: int,
        limiter: OutputLimiter,
        scanner: FailureScanner,
        flush_interval: float,
        secrets: Iterable[str] = (),
    ) -> None:
        self._run_id = run_id
        self._masker = SecretMasker(secrets)
        self._limiter = limiter
        self._scanner = scanner
        self._interval = flush_interval
        self._loop = asyncio.get_running_loop()
        self._pending: list[tuple[str, str, datetime]] = []
        self._pending_chars = 0
        self._seq = 0
        self._timer: asyncio.TimerHandle | None = None
        self._wake = asyncio.Event()
        self._closed = False

    def write(self, stream: str, text: str, *, scan: bool = True) -> None:
        """Output of the run: all of it is scanned (unless ``scan`` is false), only what
        the limiter keeps is sent."""
        self._pass_on(stream, self._masker.feed(stream, text), scan)

    def _pass_on(self, stream: str, text: str, scan: bool = True) -> None:
        if not text:
            return
        if scan and self._scanner.active:
            self._scanner.feed(text, stream)
        for piece in self._limiter.feed(stream, text):
            self._add(piece.stream, piece.data)

    def note(self, text: str) -> None:
        """A message from the executor itself; always stored (there are only a few)."""
        self._add(MARKER_STREAM, self._masker.mask(text))

    def finish(self) -> str | None:
        """No more output: queue what masking held back, the limiter's marker and tail,
        close the batches, and return the first line matching the failure pattern."""
        for stream, text in self._masker.flush_all():
            self._pass_on(stream, text)
        for piece in self._limiter.finish():
            self._add(piece.stream, piece.data)
        self._closed = True
        self._wake.set()
        return self._scanner.finish()

    def _add(self, stream: str, text: str) -> None:
        self._pending.append((stream, text, datetime.now(UTC)))
        self._pending_chars += len(text)
        if self._pending_chars >= FLUSH_CHARS:
            self._wake.set()
        elif self._timer is None:
            # Batch: the first waiting piece sets the deadline for the whole batch.
            self._timer = self._loop.call_later(self._interval, self._wake.set)

    def take(self) -> list[OutputChunk]:
        """The waiting pieces as chunks with the next seq numbers; adjacent pieces of one
        stream are merged up to the batch size."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        groups: list[tuple[str, list[str], datetime]] = []
        size = 0
        for stream, text, at in self._pending:
            if groups and groups[-1][0] == stream and size + len(text) <= FLUSH_CHARS:
                groups[-1][1].append(text)
                size += len(text)
            else:
                groups.append((stream, [text], at))
                size = len(text)
        self._pending = []
        self._pending_chars = 0
        chunks = []
        for stream, texts, at in groups:
            chunks.append(OutputChunk(self._run_id, self._seq, stream, "".join(texts), at))
            self._seq += 1
        return chunks

    async def pump(self, reporter: RunReporter) -> None:
        """Send batches as they become due, until ``finish`` and all is sent."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            chunks = self.take()
            if chunks:
                await reporter.output(chunks)
            if self._closed and not self._pending:
                return
