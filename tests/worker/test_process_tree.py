"""Killing a run's whole process tree, including what left its process group (real processes).

Each test gives its processes a unique marker argument (``sleep 600.<n>``) and looks for
them by it, so a survivor is found whoever its parent is now.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from belfry.core.states import RunState
from belfry.worker.executor import execute
from belfry.worker.process_tree import (
    ProcessTracker,
    read_process,
    read_process_table,
    signal_process,
)
from tests.worker.recording import (
    RecordingReporter,
    alive,
    order,
    run,
    wait_for_marker,
    wait_gone,
    wait_marker_gone,
    with_marker,
)

PY = sys.executable
_serial = itertools.count(1)


async def started_pid(reporter: RecordingReporter) -> int:
    """The run's process id, once reported: its processes can be up (and found by their
    marker) before the executor has reported the start."""
    for _ in range(3000):
        if reporter.pid is not None:
            return reporter.pid
        await asyncio.sleep(0.01)
    raise AssertionError("the run's start was never reported")


@pytest.fixture
def marker() -> str:
    """A sleep duration no other process uses: ``sleep <marker>`` is findable by it."""
    return f"600.{os.getpid()}{next(_serial):03d}"


@pytest.fixture(autouse=True)
def no_survivors(marker: str) -> object:
    """Whatever a test asserts, leave no marked process behind."""
    yield None
    for proc in with_marker(marker):
        proc.kill()


async def test_kill_reaches_a_grandchild_that_left_the_group(marker: str) -> None:
    reporter = RecordingReporter()
    kill = asyncio.Event()
    task = asyncio.create_task(
        execute(order(f"setsid sleep {marker} & sleep {marker}"), reporter, kill, host="h")
    )
    pids = await wait_for_marker(marker, count=2)
    run_pid = await started_pid(reporter)
    assert any(os.getsid(pid) != run_pid for pid in pids)  # one did escape
    started = time.monotonic()
    kill.set()
    took = await wait_marker_gone(marker)
    print(f"tree killed {took * 1000:.0f} ms after the kill request")
    assert took < 5  # the promise is 1 s; the bound is generous for slow CI
    outcome = await asyncio.wait_for(task, 30)
    print(f"run ended {(time.monotonic() - started) * 1000:.0f} ms after the kill request")
    assert outcome.state == RunState.KILLED
    assert "kill requested: sending SIGTERM to the process tree" in reporter.text("belfry")
    assert "sending SIGKILL" not in reporter.text("belfry")  # sleep obeys SIGTERM


async def test_timeout_reaches_an_orphan_that_left_the_group(marker: str) -> None:
    # The middle shell starts an escapee (new session) and exits: the escapee is re-parented
    # away from the run, and only the tracker's memory of it ties it to the run.
    middle = f"setsid sleep {marker} & sleep 1"
    command = f"sh -c '{middle}'; echo middle gone; sleep {marker}"
    reporter = RecordingReporter()
    task = asyncio.create_task(
        execute(
            order(command, timeout_seconds=4, kill_grace_seconds=30),
            reporter,
            asyncio.Event(),
            host="h",
            flush_interval=0.01,
            tracker=ProcessTracker(interval=0.1),
        )
    )
    await reporter.wait_for("middle gone")
    pids = await wait_for_marker(marker, count=2)
    run_pid = await started_pid(reporter)
    run_tree = {run_pid, *(p.pid for p in psutil.Process(run_pid).children(True))}
    escapees = [pid for pid in pids if pid not in run_tree]
    assert len(escapees) == 1  # no longer a descendant of the run's main process
    assert os.getsid(escapees[0]) != reporter.pid
    outcome = await asyncio.wait_for(task, 30)
    assert outcome.state == RunState.TIMED_OUT
    took = await wait_marker_gone(marker)
    print(f"after the run ended, marked processes were gone within {took * 1000:.0f} ms")
    assert took < 5
    assert not alive(escapees[0])


async def test_leftovers_outside_the_group_are_killed_when_the_run_exits(marker: str) -> None:
    # The escapee also holds stdout: without the tree kill the run would only end after
    # the pipe-drain wait, with a note, and leave it running.
    started = time.monotonic()
    outcome, reporter = await run(
        f"setsid sleep {marker} & sleep 1; echo done",
        tracker=ProcessTracker(interval=0.1),
    )
    took = time.monotonic() - started
    print(f"run took {took:.2f} s")
    assert outcome.state == RunState.SUCCEEDED
    assert reporter.text("stdout") == "done\n"
    assert reporter.text("belfry") == ""
    assert await wait_marker_gone(marker) < 5


async def test_kill_reaches_a_child_that_moved_to_its_own_group(marker: str) -> None:
    script = "import os, time; os.setpgid(0, 0); time.sleep(600)"
    reporter = RecordingReporter()
    kill = asyncio.Event()
    task = asyncio.create_task(
        execute(order(f"{PY} -c '{script}' {marker} & wait"), reporter, kill, host="h")
    )
    [pid] = await wait_for_marker(marker)
    while os.getpgid(pid) != pid:  # it has moved out of the run's group
        await asyncio.sleep(0.01)
    kill.set()
    assert (await asyncio.wait_for(task, 30)).state == RunState.KILLED
    took = await wait_marker_gone(marker)
    print(f"gone {took * 1000:.0f} ms after the run ended")
    assert took < 5


async def test_kill_reaches_an_orphan_of_the_session_no_scan_has_seen(marker: str) -> None:
    # The middle shell exits at once, before any periodic scan (there is none within the
    # test): the orphan moved to its own group, and only its session still ties it to the run.
    script = "import os, time; os.setpgid(0, 0); time.sleep(600)"
    command = f"sh -c \"{PY} -c '{script}' {marker} &\"; sleep {marker}"
    reporter = RecordingReporter()
    kill = asyncio.Event()
    task = asyncio.create_task(
        execute(order(command), reporter, kill, host="h", tracker=ProcessTracker(interval=3600))
    )
    pids = await wait_for_marker(marker, count=2)
    run_pid = await started_pid(reporter)
    run_tree = {run_pid, *(p.pid for p in psutil.Process(run_pid).children(True))}
    [orphan] = [pid for pid in pids if pid not in run_tree]
    while os.getpgid(orphan) != orphan:
        await asyncio.sleep(0.01)
    kill.set()
    assert (await asyncio.wait_for(task, 30)).state == RunState.KILLED
    took = await wait_marker_gone(marker)
    print(f"gone {took * 1000:.0f} ms after the run ended")
    assert took < 5


async def test_the_grace_is_given_to_the_whole_tree(tmp_path: Path, marker: str) -> None:
    # The main shell dies on SIGTERM at once; its child cleans up for 0.5 s and must be
    # allowed to finish, not SIGKILLed as soon as the main process is gone.
    cleaned = tmp_path / "cleaned"
    script = (
        "import pathlib, signal, sys, time\n"
        "def stop(*_):\n"
        f"    time.sleep(0.5); pathlib.Path('{cleaned}').touch(); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    command = f'{PY} -c "{script}" {marker} & sleep {marker}'
    reporter = RecordingReporter()
    kill = asyncio.Event()
    task = asyncio.create_task(
        execute(
            order(command, kill_grace_seconds=30), reporter, kill, host="h", flush_interval=0.01
        )
    )
    await reporter.wait_for("ready")
    kill.set()
    outcome = await asyncio.wait_for(task, 60)
    assert outcome.state == RunState.KILLED
    assert cleaned.exists()
    assert "sending SIGKILL" not in reporter.text("belfry")


async def test_a_descendant_ignoring_sigterm_is_killed_after_the_grace(marker: str) -> None:
    script = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    command = f"setsid {PY} -c '{script}' {marker} & sleep {marker}"
    reporter = RecordingReporter()
    kill = asyncio.Event()
    task = asyncio.create_task(
        execute(order(command, kill_grace_seconds=1), reporter, kill, host="h")
    )
    await wait_for_marker(marker, count=2)
    await asyncio.sleep(0.3)  # let the interpreter install its handler
    started = time.monotonic()
    kill.set()
    outcome = await asyncio.wait_for(task, 60)
    took = time.monotonic() - started
    print(f"run ended {took:.2f} s after the kill request (grace 1 s)")
    assert outcome.state == RunState.KILLED
    assert "still running 1s after SIGTERM: sending SIGKILL" in reporter.text("belfry")
    assert took >= 0.9
    assert await wait_marker_gone(marker) < 5


async def test_the_tracker_remembers_a_descendant_after_its_parent_exits(marker: str) -> None:
    tracker = ProcessTracker(interval=0.05)
    parent = subprocess.Popen(["sh", "-c", f"setsid sleep {marker} & sleep 0.5"])
    tree = tracker.track(parent.pid)
    try:
        [escapee] = await wait_for_marker(marker)
        await asyncio.to_thread(parent.wait)
        while psutil.Process(escapee).ppid() == parent.pid:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # a few scans after the parent is gone
        assert escapee in tree.members
        assert parent.pid not in tree.members  # reaped: dropped
        assert tree.kill() == 1
        assert await wait_gone(escapee)
        assert await asyncio.to_thread(tree.prune) == 0
    finally:
        tree.close()


async def test_a_signal_needs_the_same_start_time() -> None:
    child = subprocess.Popen(["sleep", "600"])
    try:
        info = read_process(child.pid)
        assert info is not None and not info.zombie and info.ppid == os.getpid()
        assert read_process_table()[child.pid] == info
        # A different start time stands for a process that reused the pid: left alone.
        assert not signal_process(child.pid, info.start + 1, signal.SIGKILL)
        await asyncio.sleep(0.1)
        assert child.poll() is None
        assert signal_process(child.pid, info.start, signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL
    finally:
        child.kill()
        child.wait()


def test_a_zombie_is_dead() -> None:
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while not (info := read_process(child.pid)) or not info.zombie:  # exited, not reaped
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not signal_process(child.pid, info.start, signal.SIGKILL)
    child.wait()
    assert read_process(child.pid) is None


async def test_a_shared_tracker_kills_only_the_run_that_is_killed(marker: str) -> None:
    tracker = ProcessTracker(interval=0.05)
    other_marker = f"{marker}9"
    runs = []
    for mark in (marker, other_marker):
        reporter, kill = RecordingReporter(), asyncio.Event()
        command = f"sh -c 'setsid sleep {mark} & sleep 0.3'; sleep {mark}"
        task = asyncio.create_task(
            execute(order(command), reporter, kill, host="h", tracker=tracker)
        )
        runs.append((task, kill))
    try:
        survivors = await wait_for_marker(other_marker, count=2)
        await wait_for_marker(marker, count=2)
        await asyncio.sleep(0.5)  # both escapees are orphans now, remembered by the tracker
        runs[0][1].set()
        assert (await asyncio.wait_for(runs[0][0], 30)).state == RunState.KILLED
        assert await wait_marker_gone(marker) < 5
        assert all(alive(pid) for pid in survivors)
    finally:
        runs[1][1].set()
        assert (await asyncio.wait_for(runs[1][0], 30)).state == RunState.KILLED
    assert await wait_marker_gone(other_marker) < 5
