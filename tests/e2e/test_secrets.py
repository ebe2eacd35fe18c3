"""End to end: a job's secret env value through a real server, CLI, worker and store.

The command gets the real value; nothing a person can read (output, show, export, the API,
the audit log, the server's log, the database file) ever holds it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from belfry.services.secret_box import SecretBox
from tests.e2e.conftest import BELFRY, Belfry, start_server
from tests.e2e.fleet import Fleet

pytestmark = pytest.mark.e2e

SECRET = "s3cr3t-Vault-Pass-7781"
NEW_SECRET = "another-Vault-Pass-1234"
JOB = "ops/deploy"
# The command compares a digest: the job's own text must not hold the value.
SECRET_SHA256 = hashlib.sha256(SECRET.encode()).hexdigest()


def _job_yaml(secret_value: str, *, pool: str = "default") -> str:
    # The command proves it sees the real value, then prints it twice: whole, and split
    # across two writes of the pipe.
    return f"""
        jobs:
          - name: deploy
            group: ops
            pool: {pool}
            schedule: "0 3 * * *"
            command: >-
              test "$(printf '%s' "$TOKEN" | sha256sum | cut -c1-64)" = "{SECRET_SHA256}"
              || {{ echo "wrong value"; exit 3; }};
              echo "token is $TOKEN";
              printf '%s' "$TOKEN" | head -c 8; sleep 0.3;
              printf '%s\\n' "$TOKEN" | tail -c +9
            env:
              MODE: production
              TOKEN: {{secret: "{secret_value}"}}
        """


def _assert_hidden(text: str, *values: str) -> None:
    for value in values or (SECRET,):
        assert value not in text


@pytest.fixture
def server(sqlite_url: str, tmp_path: Path) -> Iterator[Belfry]:
    running = start_server(tmp_path / "home", sqlite_url)
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.on_store("postgresql")
def test_a_secret_reaches_the_command_and_nothing_else(
    belfry: Belfry, tmp_path: Path, store_url: str
) -> None:
    applied = belfry.apply(tmp_path, _job_yaml(SECRET))
    _assert_hidden(applied.stdout + applied.stderr)

    done = belfry.cli("run", JOB, "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == "token is ***\n***\n"
    _assert_hidden(done.stdout + done.stderr)
    (run,) = belfry.runs(JOB)
    logs = belfry.cli("logs", str(run["id"]))
    assert logs.stdout == "token is ***\n***\n"

    show = belfry.cli("show", JOB)
    assert show.returncode == 0 and "TOKEN" in show.stdout
    shown = belfry.cli_json("show", JOB)
    assert shown["spec"]["env"] == {"MODE": "production", "TOKEN": {"keep": True}}
    export = belfry.cli("export", "--group", "ops")
    assert export.returncode == 0
    (exported_job,) = YAML(typ="safe").load(export.stdout)["jobs"]
    assert exported_job["env"] == {"MODE": "production", "TOKEN": {"keep": True}}
    detail = belfry.api("GET", f"/api/v1/jobs/{JOB}")
    listed = belfry.api("GET", "/api/v1/jobs")
    for text in (show.stdout, json.dumps(shown), export.stdout, json.dumps(detail), str(listed)):
        _assert_hidden(text)

    # Export applies back unchanged: {keep: true} keeps the stored value.
    exported = tmp_path / "exported.yaml"
    exported.write_text(export.stdout)
    again = belfry.cli("apply", "-f", str(exported), "--output", "json")
    assert again.returncode == 0, again.stderr
    assert [c["action"] for c in json.loads(again.stdout)["changes"]] == ["unchanged"]
    # So does the same value again.
    (tmp_path / "same.yaml").write_text(_job_yaml(SECRET))
    same = belfry.cli("apply", "-f", str(tmp_path / "same.yaml"), "--output", "json")
    assert [c["action"] for c in json.loads(same.stdout)["changes"]] == ["unchanged"]

    # A new value: env changed, neither value shown, in the diff or the audit log.
    (tmp_path / "new.yaml").write_text(_job_yaml(NEW_SECRET))
    changed = belfry.cli("apply", "-f", str(tmp_path / "new.yaml"), "--output", "json")
    assert changed.returncode == 0, changed.stderr
    (change,) = json.loads(changed.stdout)["changes"]
    assert change["action"] == "update"
    assert change["fields"] == {
        "env": [
            {"MODE": "production", "TOKEN": {"keep": True}},
            {"MODE": "production", "TOKEN": {"secret": "***"}},
        ]
    }
    audit = belfry.api("GET", "/api/v1/audit", params={"limit": 1000})
    assert any(entry["action"] == "job.update" for entry in audit)
    assert any(entry["action"] == "job.create" for entry in audit)
    _assert_hidden(changed.stdout + json.dumps(audit), SECRET, NEW_SECRET)

    # The command now sees the new value, which is not the one it expects: it fails,
    # and its output still shows no value.
    failed = belfry.cli("run", JOB, "--wait")
    assert failed.returncode == 3
    assert failed.stdout == "wrong value\n"

    belfry.stop()
    log = belfry.log_path.read_text()
    assert "Uvicorn running" in log or "7711" in log or "http://" in log  # the log was kept
    _assert_hidden(log, SECRET, NEW_SECRET)
    if store_url.startswith("sqlite"):
        database = Path(store_url.removeprefix("sqlite:///"))
        stored = b"".join(
            path.read_bytes()
            for path in (database, database.with_name(database.name + "-wal"))
            if path.exists()
        )
        assert SECRET.encode() not in stored and NEW_SECRET.encode() not in stored


def test_a_remote_worker_gets_the_value_and_masks_it(
    server: Belfry, sqlite_url: str, tmp_path: Path
) -> None:
    fleet = Fleet(server, sqlite_url, tmp_path)
    try:
        worker = fleet.start("app-1", "remote")
        server.apply(tmp_path, _job_yaml(SECRET, pool="remote"))
        done = server.cli("run", JOB, "--wait")
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout == "token is ***\n***\n"
        (run,) = server.runs(JOB)
        assert run["worker"] == "app-1"
        worker.stop()
        _assert_hidden(worker.log.read_text())
    finally:
        fleet.close()


def test_the_key_file_is_made_once_and_private(server: Belfry) -> None:
    key_file = server.home / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text()
    assert len(key.strip()) == 44  # 32 bytes, urlsafe base64
    server.stop()
    restarted = start_server(server.home, f"sqlite:///{server.home / 'belfry.db'}")
    try:
        assert key_file.read_text() == key
    finally:
        restarted.stop()


def test_a_server_with_another_key_fails_the_run_and_says_why(
    sqlite_url: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    first = start_server(home, sqlite_url)
    try:
        first.apply(tmp_path, _job_yaml(SECRET))
    finally:
        first.stop()

    # Another key: the server says so at start, and the run fails instead of running
    # without its value.
    other_key = tmp_path / "other.key"
    other_key.write_bytes(SecretBox.generate_key())
    other = start_server(home, sqlite_url, "--secret-key-file", str(other_key))
    try:
        done = other.cli("run", JOB, "--wait")
        assert done.returncode == 1
        assert "could not start: env.TOKEN: the secret cannot be decrypted" in done.stderr
        (run,) = other.runs(JOB)
        assert run["state"] == "failed"
    finally:
        other.stop()
    assert "1 stored secrets cannot be decrypted" in other.log_path.read_text()

    # Given a copy of the first key (as every server sharing a database must be), it runs.
    shared_key = tmp_path / "shared.key"
    shutil.copy(home / "secret.key", shared_key)
    shared = start_server(home, sqlite_url, "--secret-key-file", str(shared_key))
    try:
        done = shared.cli("run", JOB, "--wait")
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout == "token is ***\n***\n"
    finally:
        shared.stop()


def test_a_missing_or_bad_key_file_stops_the_server_with_a_clear_message(
    sqlite_url: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    for key_file, message in (
        (tmp_path / "missing.key", "does not exist"),
        (bad, "not a key"),
    ):
        started = time.monotonic()
        done = subprocess.run(
            [BELFRY, "server", "--db", sqlite_url, "--secret-key-file", str(key_file)],
            capture_output=True,
            text=True,
            timeout=60,
            env={"BELFRY_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"},
        )
        assert done.returncode == 1, done.stdout + done.stderr
        assert f"secret key file {key_file}" in done.stderr and message in done.stderr
        assert time.monotonic() - started < 30
