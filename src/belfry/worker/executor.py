"""The executor: runs one claimed run and reports what happens.

A command runs as a local process in its own session (so its own process group), and its
whole process tree is followed while it runs (``process_tree``): a timeout or a kill
signals the group and every descendant seen, including those that left the group
(``setsid``) and were re-parented to init, and whatever of the tree is left when the main
process exits is killed, so nothing the run started can outlive it. Output is read as it
arrives through an asyncio subprocess protocol rather than ``Process.wait()``, because on
Python 3.11 the latter also waits for the pipes to close, which a grandchild holding stdout
can delay forever. An order with ``http`` is handed to the HTTP executor instead.
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
from belfry.core.output import FailureScanner, OutputLimiter
from belfry.worker.http_executor import run_http
from belfry.worker.process_tree import ProcessTracker, ProcessTree
from belfry.worker.reporting import RunReporter
from belfry.worker.run_as import resolve_run_as
from belfry.worker.run_output import RunOutput

__all__ = ["execute", "wait_for_start"]

# After the tree is killed its members' ends of the pipes close at once; a process the
# tracker never saw may hold them forever, so stop reading after this long.
_PIPE_DRAIN_SECONDS = 2.0
# On cancellation or a reporter failure: how long to wait for the SIGKILLed process to be
# reaped, so the transport is closed after the child watcher has seen the exit.
_REAP_SECONDS = 1.0
# While the grace runs after SIGTERM and the main process has exited: how often to look
# whether the rest of the tree has exited too.
_TREE_POLL_SECONDS = 0.05
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
    tracker: ProcessTracker | None = None,
) -> Outcome:
    """Run ``order`` to its end and return its outcome (also passed to ``reporter.finished``).

    Waits until ``order.start_at``. An order with ``http`` makes that request
    (``http_executor.run_http``). Otherwise a string command runs under ``/bin/sh -c``, a
    list as argv, with stdin from /dev/null, the BELFRY_* environment and
    ``order.working_dir``; with ``order.run_as``, as that user (``run_as``). On timeout, or
    when ``kill`` is set, the process tree gets SIGTERM and, unless all of it has exited
    within ``order.kill_grace_seconds``, SIGKILL. A run that cannot be started ends as
    ``failed`` with the error in its output; it never raises. Exceptions from ``reporter``
    propagate (after the process tree is killed), as does cancellation.

    ``tracker`` follows the process trees; an agent should share one among its runs (it
    scans all of the host's processes once per interval). Without one, the run gets its own.
    """
    try:
        scanner = FailureScanner(order.failure_pattern)
    except ValueError as error:
        scanner = FailureScanner(None)
        output = RunOutput(
            order.run_id, OutputLimiter(0, 0), scanner, flush_interval, order.secrets
        )
        return await _end_unstarted(order, reporter, output, spawn_error=str(error))
    output = RunOutput(
        order.run_id,
        OutputLimiter(output_head_bytes, output_tail_bytes),
        scanner,
        flush_interval,
        # Masked before anything is scanned, stored or reported.
        order.secrets,
    )

    if not await wait_for_start(order.start_at, kill):
        return await _end_unstarted(order, reporter, output, killed=True)
    if order.http is not None:
        return await run_http(order, order.http, reporter, kill, output, host=host)
    return await _run_command(order, reporter, kill, output, host, tracker or ProcessTracker())


async def _run_command(
    order: RunOrder,
    reporter: RunReporter,
    kill: asyncio.Event,
    output: RunOutput,
    host: str,
    tracker: ProcessTracker,
) -> Outcome:
    loop = asyncio.get_running_loop()
    if order.command is None:
        error = "the order has neither a command nor an http request"
        return await _end_unstarted(order, reporter, output, spawn_error=error)
    if isinstance(order.command, str):
        argv = ["/bin/sh", "-c", order.command]
    else:
        argv = list(order.command)
    if not argv:
        return await _end_unstarted(order, reporter, output, spawn_error="empty command")
    env = {**os.environ, **order.process_environment()}
    cwd = order.working_dir
    switch_user: dict[str, Any] = {}
    if order.run_as is not None:
        try:
            user = resolve_run_as(order.run_as)
        except ValueError as error:
            return await _end_unstarted(order, reporter, output, spawn_error=str(error))
        env = {**user.environment(os.environ), **order.process_environment()}
        cwd = cwd or user.default_working_dir()
        # The child sets its groups, then its gid, then its uid, before exec.
        switch_user = user.spawn_options()
    try:
        transport, protocol = await loop.subprocess_exec(
            lambda: _RunProtocol(output),
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
            **switch_user,
        )
    except (OSError, ValueError, TypeError, subprocess.SubprocessError) as error:
        return await _end_unstarted(order, reporter, output, spawn_error=str(error))

    # start_new_session makes the child a session and process group leader: pgid == pid.
    pid = transport.get_pid()
    tree = tracker.track(pid)
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
            output.note(f"{why}: sending SIGTERM to the process tree\n")
            _signal_tree(tree, signal.SIGTERM)
            grace = order.kill_grace_seconds
            deadline = loop.time() + grace
            # The grace is the whole tree's, not only the main process's: a descendant
            # still cleaning up after the main process exited is given the rest of it.
            if not (
                await _wait_exit(protocol, pump, grace)
                and await _wait_tree_gone(tree, pump, deadline)
            ):
                output.note(f"still running {grace:g}s after SIGTERM: sending SIGKILL\n")
                _signal_tree(tree, signal.SIGKILL)
                await _wait_exit(protocol, pump, None)

        # The main process is gone; nothing else of its tree may outlive the run.
        _signal_tree(tree, signal.SIGKILL)
        if not protocol.pipes_closed.done():
            await asyncio.wait((protocol.pipes_closed,), timeout=_PIPE_DRAIN_SECONDS)
            if not protocol.pipes_closed.done():
                output.note(
                    "stopped reading output: a process outside the run's process tree "
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
            _signal_tree(tree, signal.SIGKILL)
            if not protocol.exited.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait((protocol.exited,), timeout=_REAP_SECONDS)
            protocol.detach()
            transport.close()
        tree.close()
        if pump is not None and not pump.done():
            pump.cancel()


async def wait_for_start(start_at: datetime, kill: asyncio.Event) -> bool:
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
        _raise_pump_error(pump)
    return protocol.exited.done()


async def _wait_tree_gone(tree: ProcessTree, pump: asyncio.Task[None], deadline: float) -> bool:
    """Wait until every remembered process of ``tree`` has exited, or the loop's clock
    reaches ``deadline``; True if they all did."""
    loop = asyncio.get_running_loop()
    while tree.prune():
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        done, _ = await asyncio.wait((pump,), timeout=min(_TREE_POLL_SECONDS, remaining))
        if done:
            _raise_pump_error(pump)
    return True


def _raise_pump_error(pump: asyncio.Task[None]) -> None:
    pump.result()  # raises the reporter's exception
    raise RuntimeError("output pump stopped before the run ended")


def _signal_tree(tree: ProcessTree, sig: signal.Signals) -> None:
    """Signal the run's tree and its process group (pgid == the main process's pid)."""
    # The tree first: its scan must see the main process alive, as children of a dead
    # process are re-parented and could no longer be told apart as the run's.
    if sig == signal.SIGKILL:
        tree.kill()
    else:
        tree.signal(sig)
    # The group catches members born since the scan. ESRCH: the group is already empty.
    # EPERM: some systems answer so for a group of zombies.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(tree.root, sig)


async def _end_unstarted(
    order: RunOrder,
    reporter: RunReporter,
    output: RunOutput,
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


class _RunProtocol(asyncio.SubprocessProtocol):
    """Decodes the process's pipes into the output buffer and signals exit and EOF."""

    def __init__(self, output: RunOutput) -> None:
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
