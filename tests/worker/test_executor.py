"""The shell executor against real processes (no mocks): /bin/sh, sleep, the test's Python."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from belfry.core.execution import Outcome
from belfry.core.states import RunState
from belfry.worker.executor import execute
from tests.worker.recording import RecordingReporter, alive, order, run, wait_gone

PY = sys.executable


async def test_success_reports_started_output_finished_in_order() -> None:
    outcome, reporter = await run("echo hello")
    assert outcome == Outcome(RunState.SUCCEEDED, 0)
    assert reporter.calls[0] == "started"
    assert reporter.calls[-1] == "finished"
    assert reporter.outcome == outcome
    assert reporter.host == "test-host"
    assert reporter.pid is not None and reporter.pid > 0
    assert reporter.text("stdout") == "hello\n"
    assert all(chunk.run_id == 42 for chunk in reporter.chunks)


@pytest.mark.parametrize(
    ("command", "codes", "state", "exit_code"),
    [
        ("exit 3", (0,), RunState.FAILED, 3),
        ("exit 3", (0, 3), RunState.SUCCEEDED, 3),
        ("exit 0", (1,), RunState.FAILED, 0),
        ("kill -9 $$", (0,), RunState.FAILED, -9),
    ],
)
async def test_exit_code_is_judged_against_success_exit_codes(
    command: str, codes: tuple[int, ...], state: RunState, exit_code: int
) -> None:
    outcome, _ = await run(command, success_exit_codes=codes)
    assert (outcome.state, outcome.exit_code) == (state, exit_code)


async def test_failure_pattern_fails_a_run_that_exits_zero() -> None:
    outcome, _ = await run(
        "echo all good; echo 'ERROR: disk full' >&2; echo more", failure_pattern="ERROR|Traceback"
    )
    assert outcome.state == RunState.FAILED
    assert outcome.exit_code == 0
    assert outcome.reason is not None and "ERROR: disk full" in outcome.reason

    outcome, _ = await run("echo all good", failure_pattern="ERROR|Traceback")
    assert outcome.state == RunState.SUCCEEDED


async def test_failure_pattern_is_found_in_output_the_limiter_drops() -> None:
    script = "for i in range(2000): print('line', i, 'ERROR here' if i == 1000 else 'fine')"
    outcome, reporter = await run(
        [PY, "-c", script],
        failure_pattern="ERROR",
        output_head_bytes=200,
        output_tail_bytes=200,
    )
    assert "ERROR" not in reporter.text()
    assert outcome.state == RunState.FAILED
    assert outcome.reason is not None and "line 1000 ERROR here" in outcome.reason


async def test_process_gets_the_belfry_environment_and_the_job_env() -> None:
    names = ["BELFRY_JOB", "BELFRY_RUN_ID", "BELFRY_SCHEDULED_FOR", "BELFRY_ATTEMPT"]
    names += ["BELFRY_OCCURRENCE", "APP_MODE", "PATH"]
    script = f"import json, os; print(json.dumps({{n: os.environ.get(n) for n in {names!r}}}))"
    outcome, reporter = await run([PY, "-c", script], env={"APP_MODE": "with spaces & $x"})
    assert outcome.state == RunState.SUCCEEDED
    seen = json.loads(reporter.text("stdout"))
    assert seen["BELFRY_JOB"] == "ops/test-job"
    assert seen["BELFRY_RUN_ID"] == "42"
    assert seen["BELFRY_SCHEDULED_FOR"] == "2027-01-02T03:04:05Z"
    assert seen["BELFRY_ATTEMPT"] == "2"
    assert seen["BELFRY_OCCURRENCE"] == "ops/test-job@2027-01-02T03:04:05Z"
    assert seen["APP_MODE"] == "with spaces & $x"
    assert seen["PATH"] == os.environ["PATH"]  # the worker's own environment is inherited


async def test_stdin_is_dev_null() -> None:
    script = "import os; print(os.path.samestat(os.fstat(0), os.stat(os.devnull)))"
    outcome, reporter = await run([PY, "-c", script])
    assert outcome.state == RunState.SUCCEEDED
    assert reporter.text("stdout") == "True\n"
    # And a reader of stdin sees end-of-file at once instead of hanging.
    outcome, reporter = await run("cat; echo eof", timeout_seconds=30)
    assert reporter.text("stdout") == "eof\n"


async def test_process_runs_in_its_own_process_group_and_session() -> None:
    script = "import os; print(os.getpgid(0) == os.getpid(), os.getsid(0) == os.getpid())"
    _, reporter = await run([PY, "-c", script])
    assert reporter.text("stdout") == "True True\n"


async def test_argv_list_is_not_split_or_interpreted_by_a_shell() -> None:
    script = "import sys, json; print(json.dumps(sys.argv[1:]))"
    outcome, reporter = await run([PY, "-c", script, "two words", "$HOME", "a;b"])
    assert outcome.state == RunState.SUCCEEDED
    assert json.loads(reporter.text("stdout")) == ["two words", "$HOME", "a;b"]


async def test_working_dir(tmp_path: Path) -> None:
    outcome, reporter = await run(
        [PY, "-c", "import os; print(os.getcwd())"], working_dir=str(tmp_path)
    )
    assert outcome.state == RunState.SUCCEEDED
    assert reporter.text("stdout").strip() == os.path.realpath(tmp_path)


async def test_stdout_and_stderr_stream_while_the_process_runs(tmp_path: Path) -> None:
    go = tmp_path / "go"
    command = f"echo out1; echo err1 >&2; while [ ! -e '{go}' ]; do sleep 0.01; done; echo out2"
    reporter = RecordingReporter()
    task = asyncio.create_task(
        execute(order(command), reporter, asyncio.Event(), host="h", flush_interval=0.02)
    )
    # Both lines arrive before the process can go on: output is streamed, not collected.
    await reporter.wait_for(r"(?s)(out1.*err1|err1.*out1)")
    assert "finished" not in reporter.calls
    go.touch()
    outcome = await task
    assert outcome.state == RunState.SUCCEEDED
    assert reporter.text("stdout") == "out1\nout2\n"
    assert reporter.text("stderr") == "err1\n"
    assert [chunk.seq for chunk in reporter.chunks] == list(range(len(reporter.chunks)))
    assert len(reporter.batches) >= 2
    assert all(chunk.at.tzinfo is not None for chunk in reporter.chunks)


async def test_invalid_utf8_is_replaced_not_fatal() -> None:
    outcome, reporter = await run(r"printf 'caf\303\251 \377\376 ok\n'")
    assert outcome.state == RunState.SUCCEEDED
    assert reporter.text("stdout") == "café \ufffd\ufffd ok\n"


async def test_large_output_keeps_head_marker_and_tail() -> None:
    script = "import sys\nfor i in range(20000): sys.stdout.write(f'line {i:05d}\\n')"
    expected = "".join(f"line {i:05d}\n" for i in range(20000))  # 220,000 bytes
    outcome, reporter = await run([PY, "-c", script], output_head_bytes=1000, output_tail_bytes=500)
    assert outcome.state == RunState.SUCCEEDED
    chunks = reporter.chunks
    assert [chunk.seq for chunk in chunks] == list(range(len(chunks)))
    markers = [chunk for chunk in chunks if chunk.stream == "belfry"]
    assert len(markers) == 1
    omitted = len(expected) - 1500
    assert f"[... {omitted:,} bytes of output omitted ...]" in markers[0].data
    before = "".join(c.data for c in chunks if c.seq < markers[0].seq)
    after = "".join(c.data for c in chunks if c.seq > markers[0].seq)
    assert before == expected[:1000]
    assert after == expected[-500:]


async def test_timeout_sends_term_then_kill_after_the_grace() -> None:
    # The shell traps TERM and carries on, so only the SIGKILL after the grace ends it.
    command = "trap 'echo got TERM' TERM; echo ready; while :; do sleep 0.05; done"
    grace = 1.0
    started = time.monotonic()
    outcome, reporter = await run(command, timeout_seconds=0.5, kill_grace_seconds=grace)
    elapsed = time.monotonic() - started
    assert outcome.state == RunState.TIMED_OUT
    assert outcome.exit_code == -signal.SIGKILL
    assert "got TERM" in reporter.text("stdout")
    notes = reporter.text("belfry")
    assert "timed out after 0.5s: sending SIGTERM" in notes
    assert "sending SIGKILL" in notes
    assert elapsed >= 0.5 + grace * 0.9  # the grace was given (no upper bound: CI is slow)


async def test_timeout_of_a_process_that_obeys_term() -> None:
    outcome, reporter = await run("sleep 600", timeout_seconds=0.2, kill_grace_seconds=30)
    assert outcome.state == RunState.TIMED_OUT
    assert outcome.exit_code == -signal.SIGTERM
    assert "sending SIGKILL" not in reporter.text("belfry")


async def test_kill_event_kills_the_whole_process_group() -> None:
    reporter = RecordingReporter()
    kill = asyncio.Event()
    task = asyncio.create_task(
        execute(
            order("sleep 600 & echo $!; sleep 600"), reporter, kill, host="h", flush_interval=0.01
        )
    )
    grandchild = int((await reporter.wait_for(r"(\d+)\n")).group(1))
    assert alive(grandchild)
    kill.set()
    outcome = await task
    assert outcome.state == RunState.KILLED
    assert outcome.reason == "killed on request"
    assert "kill requested: sending SIGTERM to the process tree" in reporter.text("belfry")
    assert await wait_gone(grandchild)


async def test_a_backgrounded_grandchild_does_not_outlive_a_finished_run() -> None:
    # The grandchild holds stdout open; the run must end anyway, and take it along.
    started = time.monotonic()
    outcome, reporter = await run("sleep 600 & echo $!")
    assert time.monotonic() - started < 60
    assert outcome.state == RunState.SUCCEEDED
    grandchild = int(reporter.text("stdout"))
    assert await wait_gone(grandchild)
    assert reporter.text("belfry") == ""


async def test_a_process_outside_the_run_cannot_hold_it_open(tmp_path: Path) -> None:
    # A process that is no descendant of the run (here: this test) holds the run's stdout
    # open: the tree kill cannot reach it, and the run must end anyway.
    go = tmp_path / "go"
    command = f"echo $$; while [ ! -e '{go}' ]; do sleep 0.01; done"
    reporter = RecordingReporter()
    task = asyncio.create_task(
        execute(order(command), reporter, asyncio.Event(), host="h", flush_interval=0.01)
    )
    pid = int((await reporter.wait_for(r"(\d+)\n")).group(1))
    holder = os.open(f"/proc/{pid}/fd/1", os.O_WRONLY)  # the same pipe, opened anew
    try:
        go.touch()
        outcome = await asyncio.wait_for(task, 60)
        assert outcome.state == RunState.SUCCEEDED
        assert "stopped reading output" in reporter.text("belfry")
    finally:
        os.close(holder)


async def test_command_not_found_fails_with_the_error_in_the_output() -> None:
    outcome, reporter = await run(["belfry-no-such-command", "--flag"])
    assert outcome.state == RunState.FAILED
    assert outcome.exit_code is None
    assert outcome.reason is not None and outcome.reason.startswith("could not start:")
    assert "No such file or directory" in reporter.text("belfry")
    assert reporter.calls == ["output", "finished"]  # never started
    assert [chunk.seq for chunk in reporter.chunks] == [0]

    outcome, reporter = await run("belfry-no-such-command")  # the shell reports this one
    assert (outcome.state, outcome.exit_code) == (RunState.FAILED, 127)
    assert "not found" in reporter.text("stderr")


async def test_permission_denied_fails(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    outcome, reporter = await run([str(script)])
    assert outcome.state == RunState.FAILED
    assert "Permission denied" in reporter.text("belfry")


async def test_bad_working_dir_fails(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    outcome, reporter = await run("echo hi", working_dir=str(missing))
    assert outcome.state == RunState.FAILED
    assert outcome.exit_code is None
    assert str(missing) in reporter.text("belfry")


async def test_start_at_in_the_future_is_respected() -> None:
    start_at = datetime.now(UTC) + timedelta(seconds=0.5)
    outcome, reporter = await run(
        [PY, "-c", "import time; print(repr(time.time()))"], start_at=start_at
    )
    assert outcome.state == RunState.SUCCEEDED
    assert float(reporter.text("stdout")) >= start_at.timestamp()


async def test_kill_before_start_at_never_starts_the_process() -> None:
    reporter = RecordingReporter()
    kill = asyncio.Event()
    start_at = datetime.now(UTC) + timedelta(seconds=600)
    task = asyncio.create_task(
        execute(order("echo hi", start_at=start_at), reporter, kill, host="h")
    )
    await asyncio.sleep(0.05)
    kill.set()
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.state == RunState.KILLED
    assert "started" not in reporter.calls
    assert "killed before the process was started" in reporter.text("belfry")


async def test_a_failing_reporter_propagates_and_the_process_is_killed() -> None:
    reporter = RecordingReporter(fail_on_started=True)
    with pytest.raises(ConnectionError):
        await execute(order("sleep 600"), reporter, asyncio.Event(), host="h")
    assert reporter.pid is not None
    assert await wait_gone(reporter.pid)
    assert "finished" not in reporter.calls


async def test_cancellation_kills_the_process_group() -> None:
    reporter = RecordingReporter()
    task = asyncio.create_task(
        execute(
            order("sleep 600 & echo $!; sleep 600"),
            reporter,
            asyncio.Event(),
            host="h",
            flush_interval=0.01,
        )
    )
    grandchild = int((await reporter.wait_for(r"(\d+)\n")).group(1))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert reporter.pid is not None
    assert await wait_gone(reporter.pid)
    assert await wait_gone(grandchild)


async def test_an_invalid_failure_pattern_fails_without_starting() -> None:
    outcome, reporter = await run("echo hi", failure_pattern="(unclosed")
    assert outcome.state == RunState.FAILED
    assert "started" not in reporter.calls
    assert "invalid failure_pattern" in reporter.text("belfry")


async def test_an_order_without_command_or_http_fails_without_starting() -> None:
    outcome, reporter = await run(None)
    assert outcome.state == RunState.FAILED
    assert outcome.reason == "could not start: the order has neither a command nor an http request"
    assert "started" not in reporter.calls
