"""The shell executor: runs one claimed run as a local process and reports what happens.

The process gets its own session (so its own process group): a timeout or a kill signals
the whole group, and whatever is left of the group when the main process exits is killed,
so a backgrounded grandchild cannot outlive its run. Output is read as it arrives through
an asyncio subprocess protocol rather than ``Process.wait()``, because on Python 3.11 the
latter also waits for the pipes to close, which a grandchild holding stdout can delay
forever.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import signal
import subprocess
from datetime import UTC, datetime
from typing import Any

from belfry.core.execution import Outcome, RunOrder, judge
from belfry.core.output import MARKER_STREAM, FailureScanner, OutputLimiter
from belfry.core.records import OutputChunk
from belfry.worker.reporting import RunReporter

__all__ = ["execute"]

# A batch is sent early once this much text is waiting, and no chunk grows past it by merging.
_FLUSH_CHARS = 64 * 1024
# After the group is killed its members' ends of the pipes close at once; a process that
# left the group (setsid) may hold them forever, so stop reading after this long.
_PIPE_DRAIN_SECONDS = 2.0
# On cancellation or a reporter failure: how long to wait for the SIGKILLed process to be
# reaped, so the transport is closed after the child watcher has seen the exit.
_REAP_SECONDS = 1.0
_STREAMS = {1: "stdout", 2: "stderr"}


async def execute(
    order: RunOrder,
    reporter: RunReporter,
    kill: asyncio.Event,
    *,
    host: str,
    output_head_bytes: int = 256 * 1024,
    output_tail_bytes: int = 256 * 1024,
    flush_interval: float = 0.2,
) -> Outcome:
    """Run ``order`` to its end and return its outcome (also passed to ``reporter.finished``).

    Waits until ``order.start_at``; a string command runs under ``/bin/sh -c``, a list as
    argv, with stdin from /dev/null, the BELFRY_* environment and ``order.working_dir``.
    On timeout, or when ``kill`` is set, the process group gets SIGTERM and, after
    ``order.kill_grace_seconds``, SIGKILL. A command that cannot be started ends as
    ``failed`` with the error in its output; it never raises. Exceptions from ``reporter``
    propagate (after the process group is killed), as does cancellation.
    """
    loop = asyncio.get_running_loop()
    try:
        scanner = FailureScanner(order.failure_pattern)
    except ValueError as error:
        scanner = FailureScanner(None)
        output = _OutputBuffer(order.run_id, OutputLimiter(0, 0), scanner, flush_interval)
        return await _end_unstarted(order, reporter, output, spawn_error=str(error))
    output = _OutputBuffer(
        order.run_id,
        OutputLimiter(output_head_bytes, output_tail_bytes),
        scanner,
        flush_interval,
    )

    if not await _wait_for_start(order.start_at, kill):
        return await _end_unstarted(order, reporter, output, killed=True)

    if isinstance(order.command, str):
        argv = ["/bin/sh", "-c", order.command]
    else:
        argv = list(order.command)
    if not argv:
        return await _end_unstarted(order, reporter, output, spawn_error="empty command")
    try:
        transport, protocol = await loop.subprocess_exec(
            lambda: _RunProtocol(output),
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **order.process_environment()},
            cwd=order.working_dir,
            start_new_session=True,
        )
    except (OSError, ValueError, TypeError, subprocess.SubprocessError) as error:
        return await _end_unstarted(order, reporter, output, spawn_error=str(error))

    # start_new_session makes the child a session and process group leader: pgid == pid.
    pid = transport.get_pid()
    pump: asyncio.Task[None] | None = None
    kill_wait: asyncio.Task[bool] | None = None
    ended = False
    try:
        await reporter.started(order.run_id, pid, host)
        pump = loop.create_task(output.pump(reporter))
        kill_wait = loop.create_task(kill.wait())

        timeout = order.timeout_seconds
        timed_out = killed = False
        if not await _wait_exit(protocol, pump, timeout, kill_wait):
            killed = kill_wait.done()
            timed_out = not killed
            why = "kill requested" if killed else f"timed out after {timeout:g}s"
            output.note(f"{why}: sending SIGTERM to the process group\n")
            _signal_group(pid, signal.SIGTERM)
            grace = order.kill_grace_seconds
            if not await _wait_exit(protocol, pump, grace):
                output.note(f"still running {grace:g}s after SIGTERM: sending SIGKILL\n")
                _signal_group(pid, signal.SIGKILL)
                await _wait_exit(protocol, pump, None)

        # The main process is gone; nothing else of its group may outlive the run.
        _signal_group(pid, signal.SIGKILL)
        if not protocol.pipes_closed.done():
            await asyncio.wait((protocol.pipes_closed,), timeout=_PIPE_DRAIN_SECONDS)
            if not protocol.pipes_closed.done():
                output.note(
                    "stopped reading output: a process outside the run's process group "
                    "still holds its stdout or stderr\n"
                )
        protocol.detach()
        transport.close()
        ended = True

        failure_matched = output.finish()
        await pump
        outcome = judge(
            transport.get_returncode(),
            success_exit_codes=order.success_exit_codes,
            failure_matched=failure_matched,
            timed_out=timed_out,
            killed=killed,
        )
        await reporter.finished(order.run_id, outcome)
        return outcome
    finally:
        if kill_wait is not None:
            kill_wait.cancel()
        if not ended:
            # A reporter failure or cancellation: the run must not go on unwatched.
            _signal_group(pid, signal.SIGKILL)
            if not protocol.exited.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait((protocol.exited,), timeout=_REAP_SECONDS)
            protocol.detach()
            transport.close()
        if pump is not None and not pump.done():
            pump.cancel()


async def _wait_for_start(start_at: datetime, kill: asyncio.Event) -> bool:
    """Sleep until ``start_at``; False if ``kill`` is set first."""
    if start_at.tzinfo is None:
        start_at = start_at.replace(tzinfo=UTC)
    delay = (start_at - datetime.now(UTC)).total_seconds()
    if delay <= 0:
        return not kill.is_set()
    # The wall clock is read once; the loop's monotonic clock measures the wait, so a clock
    # step can neither start the run early nor stall it.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + delay
    kill_wait = loop.create_task(kill.wait())
    try:
        while not kill_wait.done():
            remaining = deadline - loop.time()
            if remaining <= 0:  # timers may fire a clock tick early: loop until really due
                return True
            await asyncio.wait((kill_wait,), timeout=remaining)
        return False
    finally:
        kill_wait.cancel()


async def _wait_exit(
    protocol: _RunProtocol,
    pump: asyncio.Task[None],
    timeout: float | None,
    kill_wait: asyncio.Task[bool] | None = None,
) -> bool:
    """Wait up to ``timeout`` for the main process to exit (or ``kill_wait``); True if it did.

    Also watches the output pump, so a reporter failure surfaces now, not at the end.
    """
    waits: set[asyncio.Future[Any]] = {protocol.exited, pump}
    if kill_wait is not None:
        waits.add(kill_wait)
    done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if pump in done:
        pump.result()  # raises the reporter's exception
        raise RuntimeError("output pump stopped before the run ended")
    return protocol.exited.done()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    # ESRCH: the group is already empty. EPERM: some systems answer so for a group of zombies.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _end_unstarted(
    order: RunOrder,
    reporter: RunReporter,
    output: _OutputBuffer,
    *,
    spawn_error: str | None = None,
    killed: bool = False,
) -> Outcome:
    """Report a run that ended without a process: it could not start, or was killed first."""
    if spawn_error is not None:
        output.note(f"could not start the command: {spawn_error}\n")
    else:
        output.note("killed before the process was started\n")
    outcome = judge(
        None,
        success_exit_codes=order.success_exit_codes,
        failure_matched=None,
        killed=killed,
        spawn_error=spawn_error,
    )
    chunks = output.take()
    if chunks:
        await reporter.output(chunks)
    await reporter.finished(order.run_id, outcome)
    return outcome


class _OutputBuffer:
    """A run's output between flushes: scanned, capped, then sent in numbered batches."""

    def __init__(
        self,
        run_id: int,
        limiter: OutputLimiter,
        scanner: FailureScanner,
        flush_interval: float,
    ) -> None:
        self._run_id = run_id
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

    def write(self, stream: str, text: str) -> None:
        """Output of the process: all of it is scanned, only what the limiter keeps is sent."""
        if self._scanner.active:
            self._scanner.feed(text, stream)
        for piece in self._limiter.feed(stream, text):
            self._add(piece.stream, piece.data)

    def note(self, text: str) -> None:
        """A message from the executor itself; always stored (there are only a few)."""
        self._add(MARKER_STREAM, text)

    def finish(self) -> str | None:
        """No more output: queue the limiter's marker and tail, close the batches, and
        return the first line matching the failure pattern."""
        for piece in self._limiter.finish():
            self._add(piece.stream, piece.data)
        self._closed = True
        self._wake.set()
        return self._scanner.finish()

    def _add(self, stream: str, text: str) -> None:
        self._pending.append((stream, text, datetime.now(UTC)))
        self._pending_chars += len(text)
        if self._pending_chars >= _FLUSH_CHARS:
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
            if groups and groups[-1][0] == stream and size + len(text) <= _FLUSH_CHARS:
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


class _RunProtocol(asyncio.SubprocessProtocol):
    """Decodes the process's pipes into the output buffer and signals exit and EOF."""

    def __init__(self, output: _OutputBuffer) -> None:
        loop = asyncio.get_running_loop()
        self._output = output
        # Incremental, so a character split across two reads is decoded whole.
        self._decoders = {
            fd: codecs.getincrementaldecoder("utf-8")(errors="replace") for fd in _STREAMS
        }
        self._detached = False
        self.exited: asyncio.Future[None] = loop.create_future()
        self.pipes_closed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        decoder = self._decoders.get(fd)
        if decoder is None or self._detached:
            return
        text = decoder.decode(data)
        if text:
            self._output.write(_STREAMS[fd], text)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if self._detached:
            return
        self._close_stream(fd)
        if not self._decoders and not self.pipes_closed.done():
            self.pipes_closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def detach(self) -> None:
        """Stop taking output; a character cut short at the end becomes U+FFFD."""
        for fd in list(self._decoders):
            self._close_stream(fd)
        self._detached = True

    def _close_stream(self, fd: int) -> None:
        decoder = self._decoders.pop(fd, None)
        if decoder is not None and (text := decoder.decode(b"", final=True)):
            self._output.write(_STREAMS[fd], text)
