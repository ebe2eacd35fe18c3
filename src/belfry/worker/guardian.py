"""The guardian: a small process beside a worker that kills its runs if the worker dies.

A worker killed with SIGKILL (or by the OOM killer) cannot stop its runs, and the servers
will declare them lost and may retry them elsewhere: the old processes must not go on as
twins. The guardian holds the read end of a pipe the worker writes to; the kernel closes
the write end however the worker dies, so end-of-file is a death notice that cannot be
missed. The worker tells it each run's tree as it learns it (``tree ROOT PID:START ...``;
``done ROOT`` when a run is over); on end-of-file, without a ``quit`` first, the guardian
kills every remembered process (checking its start time, so no reused pid is hit), the
runs' sessions and process groups, then exits.

It runs in a session of its own, so signals to the worker's group do not reach it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from typing import IO

from belfry.worker.process_tree import ProcessTable, signal_process

__all__ = ["Guardian", "main"]


class Guardian:
    """The worker's end: start the guardian, tell it about trees, stop it cleanly."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._pipe: IO[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "belfry.worker.guardian"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
        self._pipe = self._process.stdin

    def tree(self, root: int, members: dict[int, float]) -> None:
        self._send(f"tree {root} " + " ".join(f"{pid}:{start!r}" for pid, start in members.items()))

    def done(self, root: int) -> None:
        self._send(f"done {root}")

    def stop(self) -> None:
        """The worker stops on purpose (its runs are dealt with): let the guardian go."""
        self._send("quit")
        if self._pipe is not None:
            with contextlib.suppress(OSError):
                self._pipe.close()
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5)
        self._pipe = None

    def _send(self, line: str) -> None:
        if self._pipe is None:
            return
        try:
            self._pipe.write(line.encode() + b"\n")
            self._pipe.flush()
        except OSError:  # the guardian is gone: nothing more it can do for us
            self._pipe = None


def _kill_everything(trees: dict[int, dict[int, float]]) -> None:
    for _ in range(3):  # processes may fork while being killed
        table = ProcessTable.read()
        for root, members in trees.items():
            for pid, start in members.items():
                signal_process(pid, start, signal.SIGKILL)
            # The run's session and group (its root leads both) hold what was not seen yet.
            for pid in table.sessions.get(root, ()):
                info = table.processes[pid]
                signal_process(pid, info.start, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.killpg(root, signal.SIGKILL)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C on the terminal is the worker's
    trees: dict[int, dict[int, float]] = {}
    for raw in sys.stdin.buffer:
        words = raw.decode(errors="replace").split()
        if not words:
            continue
        if words[0] == "quit":
            return
        if words[0] == "done" and len(words) == 2:
            trees.pop(int(words[1]), None)
        elif words[0] == "tree" and len(words) >= 2:
            members = {}
            for item in words[2:]:
                pid, _, start = item.partition(":")
                members[int(pid)] = float(start)
            trees[int(words[1])] = members
    _kill_everything(trees)  # end of file without "quit": the worker died


if __name__ == "__main__":
    main()
