"""``run_as`` with real users: switching needs root, so most of these run only as root."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from belfry.core.states import RunState
from tests.worker.recording import run

PY = sys.executable
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


@dataclass(frozen=True)
class ThrowawayUser:
    name: str
    uid: int
    gid: int
    extra_gid: int
    home: Path


@pytest.fixture
def user(tmp_path: Path) -> Iterator[ThrowawayUser]:
    """A user made for this test, with a home and a supplementary group; removed after."""
    if os.geteuid() != 0 or not shutil.which("useradd"):
        pytest.skip("needs root and useradd")
    name = f"bft{uuid.uuid4().hex[:8]}"
    extra = f"{name}x"
    home = tmp_path / "home"
    subprocess.run(["groupadd", extra], check=True)
    try:
        subprocess.run(
            ["useradd", "--no-create-home", "--home-dir", str(home), "--groups", extra, name],
            check=True,
        )
        try:
            entry = pwd.getpwnam(name)
            home.mkdir()
            os.chown(home, entry.pw_uid, entry.pw_gid)
            yield ThrowawayUser(name, entry.pw_uid, entry.pw_gid, grp.getgrnam(extra).gr_gid, home)
        finally:
            subprocess.run(["userdel", name], check=False)
    finally:
        subprocess.run(["groupdel", extra], check=False)


async def test_the_command_runs_as_the_user_with_its_groups_and_variables(
    user: ThrowawayUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BELFRY_TEST_AGENT_SECRET", "the agent's own")
    command = (
        'id -u; id -g; id -G; echo "$HOME $USER $LOGNAME"; pwd; '
        'echo "secret=${BELFRY_TEST_AGENT_SECRET-unset} job=$JOB_VAR run=$BELFRY_RUN_ID"'
    )
    outcome, reporter = await run(command, run_as=user.name, env={"JOB_VAR": "kept"})
    assert outcome.state == RunState.SUCCEEDED, reporter.text()
    uid, gid, groups, names, cwd, variables = reporter.text("stdout").splitlines()
    assert int(uid) == user.uid
    assert int(gid) == user.gid
    assert {int(g) for g in groups.split()} == {user.gid, user.extra_gid}
    assert names == f"{user.home} {user.name} {user.name}"
    assert cwd == str(user.home)  # as cron: a user's jobs start in its home
    # The agent's environment (its token, say) is not handed to another user; the job's is.
    assert variables == "secret=unset job=kept run=42"


@as_root
async def test_nobody_by_name_and_by_uid(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    for run_as in ("nobody", str(nobody.pw_uid)):
        outcome, reporter = await run("id -u; pwd", run_as=run_as)
        assert outcome.state == RunState.SUCCEEDED, reporter.text()
        # nobody's home does not exist: the run starts in /.
        assert reporter.text("stdout") == f"{nobody.pw_uid}\n/\n"
    # An explicit working_dir still counts, if the user may enter it.
    tmp_path.chmod(0o755)
    outcome, reporter = await run("pwd", run_as="nobody", working_dir=str(tmp_path))
    assert reporter.text("stdout") == f"{tmp_path}\n"


@as_root
async def test_an_unknown_user_fails_without_starting() -> None:
    outcome, reporter = await run("echo hi", run_as="belfry-no-such-user")
    assert outcome.state == RunState.FAILED
    assert outcome.reason == "could not start: unknown user 'belfry-no-such-user' in run_as"
    assert "started" not in reporter.calls
    assert "unknown user" in reporter.text("belfry")


async def test_run_as_needs_a_root_worker_unless_it_is_the_same_user() -> None:
    # A real worker process without root: started as root (the interpreter lives under
    # /root here), it drops to nobody before it runs anything.
    if os.geteuid() != 0:
        pytest.skip("this test starts the non-root worker from root")
    nobody = pwd.getpwnam("nobody")
    script = textwrap.dedent(
        """
        import asyncio, json, os, sys
        from datetime import UTC, datetime
        from belfry.core.execution import RunOrder
        from belfry.worker.executor import execute

        os.setgroups([])
        os.setgid(int(sys.argv[2]))
        os.setuid(int(sys.argv[1]))

        class Reporter:
            def __init__(self):
                self.calls = []
            async def started(self, run_id, pid, host):
                self.calls.append("started")
            async def output(self, chunks):
                self.calls.extend(chunk.data for chunk in chunks)
            async def finished(self, run_id, outcome):
                self.calls.append("finished")

        async def main():
            now = datetime.now(UTC)
            seen = []
            for user in ("root", "nobody"):
                order = RunOrder(1, "g/j", now, 1, "id -u", now, run_as=user)
                reporter = Reporter()
                outcome = await execute(order, reporter, asyncio.Event(), host="h")
                seen.append([outcome.state.value, outcome.reason, reporter.calls])
            print(json.dumps(seen))

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [PY, "-c", script, str(nobody.pw_uid), str(nobody.pw_gid)],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    as_root, as_itself = json.loads(done.stdout)
    state, reason, calls = as_root
    assert state == "failed"
    assert reason == "could not start: run_as needs the worker to run as root (run_as: 'root')"
    assert "started" not in calls
    # Its own user it may run as: there is nothing to switch.
    state, reason, calls = as_itself
    assert (state, reason) == ("succeeded", None)
    assert f"{nobody.pw_uid}\n" in calls
