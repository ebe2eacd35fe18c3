"""The guardian kills a dead worker's runs, and leaves them alone on a clean stop."""

from __future__ import annotations

import os
import subprocess
import time

from belfry.worker.guardian import Guardian
from belfry.worker.process_tree import read_process


def _alive(pid: int) -> bool:
    info = read_process(pid)
    return info is not None and not info.zombie


def _run_tree(seconds: str) -> tuple[subprocess.Popen[bytes], dict[int, float]]:
    """A run as the executor starts it (its own session), with a child, and its members."""
    process = subprocess.Popen(
        ["/bin/sh", "-c", f"sleep {seconds} & sleep {seconds}"], start_new_session=True
    )
    time.sleep(0.3)
    members = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := read_process(int(entry))) and info.sid == process.pid:
            members[int(entry)] = info.start
    assert len(members) >= 2
    return process, members


def _wait_dead(pids: list[int], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


def test_a_dead_worker_s_runs_are_killed() -> None:
    guardian = Guardian()
    guardian.start()
    process, members = _run_tree("61.5")
    guardian.tree(process.pid, members)
    # The worker dies: the kernel closes its end of the pipe, no "quit" is sent.
    assert guardian._pipe is not None
    guardian._pipe.close()
    try:
        assert _wait_dead(list(members)), "the runs outlived their worker"
    finally:
        process.kill()
        process.wait()


def test_a_clean_stop_leaves_runs_alone() -> None:
    guardian = Guardian()
    guardian.start()
    process, members = _run_tree("62.5")
    guardian.tree(process.pid, members)
    guardian.stop()
    try:
        time.sleep(0.5)
        assert all(_alive(pid) for pid in members)
    finally:
        os.killpg(process.pid, 9)
        process.wait()


def test_a_finished_run_is_forgotten() -> None:
    guardian = Guardian()
    guardian.start()
    process, members = _run_tree("63.5")
    guardian.tree(process.pid, members)
    guardian.done(process.pid)
    assert guardian._pipe is not None
    guardian._pipe.close()
    try:
        time.sleep(0.5)
        assert all(_alive(pid) for pid in members)
    finally:
        os.killpg(process.pid, 9)
        process.wait()
