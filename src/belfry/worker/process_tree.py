"""A run's process tree, followed while the run lives, so a timeout or kill reaches all of it.

Signalling the run's process group misses descendants that left it (``setsid``,
``setpgid``), and once their parent has exited they are re-parented to init and no longer
look like part of the run. So the tree is scanned periodically while the run lives, and
every descendant seen is remembered by its identity (pid and start time); a kill signals
each remembered process that is still alive under that identity. When the main process
leads its own session (the executor starts it so), every process of that session is the
run's too, whoever its parent is now. A descendant that leaves the session and loses its
parent between two scans is not found: the scan interval bounds that window.

On Linux the scan reads /proc directly (a third of psutil's cost per scan, which matters
at one scan per interval); elsewhere it uses psutil. One scan reads every process on the
host, so a tracker shared by all of an agent's runs makes one scan per interval for all.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import psutil

__all__ = [
    "ProcessInfo",
    "ProcessTable",
    "ProcessTracker",
    "ProcessTree",
    "read_process",
    "read_process_table",
    "signal_process",
]

_PROC = "/proc"
_USE_PROC = sys.platform.startswith("linux") and Path(_PROC).is_dir()
# How many times a kill re-scans for processes forked while it was signalling.
_KILL_ROUNDS = 3


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """What a scan needs of one process."""

    ppid: int
    # With the pid, the process's identity: a reused pid has a later start time.
    start: float
    zombie: bool
    # The session id; None where it is not read (psutil has no cheap way).
    sid: int | None = None


def read_process(pid: int) -> ProcessInfo | None:
    """One process's info, or None if there is no such process."""
    if _USE_PROC:
        return _read_stat(str(pid))
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            zombie = proc.status() == psutil.STATUS_ZOMBIE
            return ProcessInfo(proc.ppid(), proc.create_time(), zombie)
    except psutil.Error:
        return None


def read_process_table() -> dict[int, ProcessInfo]:
    """Every process on the host, by pid (a snapshot; processes come and go meanwhile)."""
    table: dict[int, ProcessInfo] = {}
    if _USE_PROC:
        with contextlib.suppress(OSError):
            # os and str paths: pathlib objects add 30% to a scan that runs every interval.
            for name in os.listdir(_PROC):  # noqa: PTH208 - see above
                if name.isdigit() and (info := _read_stat(name)) is not None:
                    table[int(name)] = info
        return table
    for proc in psutil.process_iter(["ppid", "create_time", "status"]):
        values = proc.info
        if values["ppid"] is not None and values["create_time"] is not None:
            zombie = values["status"] == psutil.STATUS_ZOMBIE
            table[proc.pid] = ProcessInfo(values["ppid"], values["create_time"], zombie)
    return table


def _read_stat(pid: str) -> ProcessInfo | None:
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as file:  # noqa: PTH123 - as os.listdir above
            data = file.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces or ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        # Fields 3 (state), 4 (ppid), 6 (session) and 22 (start time in clock ticks).
        return ProcessInfo(
            int(fields[1]), float(fields[19]), fields[0] in (b"Z", b"X"), int(fields[3])
        )
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class ProcessTable:
    """One scan of the host's processes, indexed once for every tree that takes it."""

    processes: Mapping[int, ProcessInfo]
    children: Mapping[int, list[int]]  # by parent pid
    sessions: Mapping[int, list[int]]  # by session id

    @classmethod
    def read(cls) -> ProcessTable:
        """Scan now (reads every process's entry: call it off the event loop when you can)."""
        processes = read_process_table()
        children: dict[int, list[int]] = {}
        sessions: dict[int, list[int]] = {}
        for pid, info in processes.items():
            children.setdefault(info.ppid, []).append(pid)
            if info.sid is not None:
                sessions.setdefault(info.sid, []).append(pid)
        return cls(processes, children, sessions)


def signal_process(pid: int, start: float, sig: int) -> bool:
    """Send ``sig`` to ``pid`` if it is still the process that started at ``start`` and is
    not a zombie; True if sent."""
    if pid <= 1 or pid == os.getpid():
        return False
    fd: int | None = None
    if hasattr(os, "pidfd_open"):
        try:
            # A pidfd pins the process: checked through it, the signal cannot hit a process
            # that reused the pid after the check.
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return False
        except OSError:  # an old kernel: check, then kill, with a tiny reuse window
            fd = None
    try:
        info = read_process(pid)
        if info is None or info.start != start or info.zombie:
            return False
        if fd is not None:
            signal.pidfd_send_signal(fd, sig)
        else:
            os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
    finally:
        if fd is not None:
            os.close(fd)


class ProcessTree:
    """The processes of one run: its main process and every descendant seen so far.

    Made by ``ProcessTracker.track``; ``close`` it when the run is over.
    """

    def __init__(self, tracker: ProcessTracker, root: int) -> None:
        self.root = root
        self._tracker = tracker
        # pid -> start time of the live processes remembered (dead ones are dropped).
        self._members: dict[int, float] = {}
        info = read_process(root)
        if info is not None and not info.zombie:
            self._members[root] = info.start
        # The kernel keeps a session's id from being reused as a pid while the session has
        # members, so a process in it cannot be a stranger.
        self._session = root if info is not None and info.sid == root else None

    @property
    def members(self) -> dict[int, float]:
        """The remembered processes (pid -> start time), as of the last scan."""
        return dict(self._members)

    def update(self, table: ProcessTable) -> None:
        """Take a scan: drop members that are gone, add every descendant of the rest and
        every process of the run's session."""
        processes = table.processes
        members: dict[int, float] = {}
        for pid, start in self._members.items():
            info = processes.get(pid)
            if info is not None and info.start == start and not info.zombie:
                members[pid] = start
        if self._session is not None:
            for pid in table.sessions.get(self._session, ()):
                if not processes[pid].zombie:
                    members.setdefault(pid, processes[pid].start)
        # A child's ppid names a member only while that member lives, and its identity was
        # just checked in the same table, so no stranger is adopted through a reused pid.
        queue = list(members)
        while queue:
            for child in table.children.get(queue.pop(), ()):
                info = processes[child]
                if child not in members and not info.zombie:
                    members[child] = info.start
                    queue.append(child)
        self._members = members

    def refresh(self) -> None:
        """Scan now (a full scan of the host's processes, in the calling thread)."""
        self.update(ProcessTable.read())

    def prune(self) -> int:
        """Drop members that have exited (reading only their own entries); the number left."""
        self._members = {
            pid: start
            for pid, start in self._members.items()
            if (info := read_process(pid)) is not None and info.start == start and not info.zombie
        }
        return len(self._members)

    def signal(self, sig: int) -> int:
        """Refresh, then send ``sig`` to every member; the number of processes signalled."""
        if self.prune():
            # Only a live member can have children the last scan has not seen.
            self.refresh()
        return sum(signal_process(pid, start, sig) for pid, start in self._members.items())

    def kill(self) -> int:
        """SIGKILL every member, re-scanning for children forked meanwhile; the number killed."""
        seen: set[tuple[int, float]] = set()
        killed = 0
        for _ in range(_KILL_ROUNDS):
            if self.prune():
                self.refresh()
            fresh = [member for member in self._members.items() if member not in seen]
            if not fresh:
                break
            seen.update(fresh)
            killed += sum(signal_process(pid, start, signal.SIGKILL) for pid, start in fresh)
        return killed

    def close(self) -> None:
        """Stop following this tree."""
        self._tracker.forget(self)


class TreeWatcher(Protocol):
    """Who else wants to know each run's tree (the guardian)."""

    def tree(self, root: int, members: dict[int, float]) -> None: ...

    def done(self, root: int) -> None: ...


class ProcessTracker:
    """Scans the host's processes every ``interval`` seconds while any tree is tracked.

    Share one per agent: the scan (in a worker thread) serves every tracked tree.
    """

    def __init__(self, interval: float = 0.15, guardian: TreeWatcher | None = None) -> None:
        self._interval = interval
        self._trees: set[ProcessTree] = set()
        self._task: asyncio.Task[None] | None = None
        # Told every tree as it changes, to kill them if this process dies.
        self._guardian = guardian
        self._told: dict[int, dict[int, float]] = {}

    def track(self, root: int) -> ProcessTree:
        """Start following ``root``'s tree; call on the event loop, right after spawning."""
        tree = ProcessTree(self, root)
        self._trees.add(tree)
        self._tell(tree)
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._scan_while_tracking(), name="process-tracker")
        return tree

    def forget(self, tree: ProcessTree) -> None:
        """Stop following ``tree`` (the scanning stops with the last one)."""
        self._trees.discard(tree)
        if self._guardian is not None and self._told.pop(tree.root, None) is not None:
            self._guardian.done(tree.root)
        if not self._trees and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _scan_while_tracking(self) -> None:
        while self._trees:
            await asyncio.sleep(self._interval)
            table = await asyncio.to_thread(ProcessTable.read)
            for tree in list(self._trees):
                tree.update(table)
                self._tell(tree)

    def _tell(self, tree: ProcessTree) -> None:
        if self._guardian is None:
            return
        members = tree.members
        if self._told.get(tree.root) != members:
            self._told[tree.root] = members
            self._guardian.tree(tree.root, members)
