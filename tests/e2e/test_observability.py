"""End to end: /metrics as Prometheus scrapes it, /readyz and ``belfry cluster`` on the
schema's revision, and JSON logs, from real server and worker processes."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import BELFRY, Belfry, free_port, start_server
from tests.e2e.fleet import Fleet

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _samples(text: str) -> Samples:
    """Every sample of a scrape, by name and labels (and proof that it parses)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def _scrape(server: Belfry, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(server.url + "/metrics", headers=headers, timeout=10)


def _metrics(server: Belfry) -> Samples:
    answer = _scrape(server, server.token)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return _samples(answer.text)


@pytest.mark.on_store("sqlite")
def test_metrics_count_real_runs_failures_and_skips(belfry: Belfry, tmp_path: Path) -> None:
    belfry.apply(
        tmp_path,
        """
        jobs:
          - name: ok
            schedule: "* * * * * *"
            command: echo fine
          - name: bad
            schedule: "* * * * * *"
            command: exit 3
          - name: held
            schedule: "* * * * * *"
            command: echo never
            paused: true
        """,
    )

    def counted() -> Samples | None:
        samples = _metrics(belfry)
        done = [
            _value(samples, "belfry_runs_finished_total", state="succeeded"),
            _value(samples, "belfry_runs_finished_total", state="failed"),
            _value(samples, "belfry_runs_skipped_total", reason="paused"),
        ]
        return samples if all(count and count >= 1 for count in done) else None

    samples = belfry.wait_for(counted, what="a success, a failure and a skip in /metrics")
    assert (_value(samples, "belfry_schedule_to_start_seconds_count") or 0) >= 2
    last = _value(samples, "belfry_job_last_success_timestamp_seconds", job="default/ok")
    assert last is not None and abs(time.time() - last) < 60
    assert _value(samples, "belfry_job_last_success_timestamp_seconds", job="default/bad") is None
    fired = _value(samples, "belfry_scheduler_last_fire_timestamp_seconds")
    assert fired is not None and abs(time.time() - fired) < 60
    assert _value(samples, "belfry_workers", state="active") == 1  # the embedded worker
    assert _value(samples, "belfry_is_leader") == 1
    assert [key for key in samples if key[0] == "belfry_leader"]
    assert _value(samples, "belfry_queue_depth") is not None
    for state in ("claimed", "running"):
        assert _value(samples, "belfry_runs_in_flight", state=state) is not None

    # The counters agree with the runs the store keeps (the server saw every change).
    stored = len(belfry.runs("default/ok", "succeeded", limit=1000))
    assert (_value(_metrics(belfry), "belfry_runs_finished_total", state="succeeded") or 0) >= (
        stored
    )

    # Text logs end each line about a run with its job and id.
    [run] = belfry.runs("default/bad", "failed", limit=1)
    log = belfry.log_path.read_text()
    assert f"run {run['id']} of default/bad ended: failed" in log
    assert re.search(rf"ended: failed .*job=default/bad run_id={run['id']}\n", log)

    # Not anonymously, nor with a worker token.
    anonymous = _scrape(belfry)
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert _scrape(belfry, "bfy_not-a-token").status_code == 401
    worker_token = Fleet(belfry, _db_url(belfry), tmp_path).token("default")
    refused = _scrape(belfry, worker_token)
    assert refused.status_code == 403, refused.text


def _db_url(server: Belfry) -> str:
    """The database URL the server was started with (its command line)."""
    args = server.process.args
    assert isinstance(args, list)
    return str(args[args.index("--db") + 1])


def test_metrics_need_a_reader_of_every_group_unless_public(
    sqlite_url: str, tmp_path: Path
) -> None:
    server = start_server(tmp_path / "home", sqlite_url, "--no-worker")
    try:
        everything = server.user_token("prometheus", {"*": "viewer"}, PASSWORD)
        assert _scrape(server, everything).status_code == 200
        # The per-job series name every group's jobs: a viewer of one group may not.
        some = server.user_token("webdev", {"web": "viewer"}, PASSWORD)
        refused = _scrape(server, some)
        assert refused.status_code == 403
        assert "may not read every group" in refused.json()["detail"]
    finally:
        server.stop()

    config = tmp_path / "belfry.yaml"
    config.write_text("metrics_public: true\n")
    public = start_server(tmp_path / "home", sqlite_url, "--no-worker", "--config", str(config))
    try:
        answer = _scrape(public)
        assert answer.status_code == 200, answer.text
        samples = _samples(answer.text)
        assert _value(samples, "belfry_workers", state="active") == 0
        # Only /metrics: the API still wants a token.
        assert httpx.get(public.url + "/api/v1/jobs", timeout=10).status_code == 401
    finally:
        public.stop()

    config.write_text("metrics_public: sometimes\n")
    refused_config = subprocess.run(
        [BELFRY, "server", "--db", sqlite_url, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "BELFRY_HOME": str(tmp_path / "home")},
    )
    assert refused_config.returncode == 2
    assert "metrics_public: expected true or false, got 'sometimes'" in refused_config.stderr


def _set_revision(db_url: str, revision: str) -> None:
    """Write the schema revision behind the server's back (what an older or newer
    release's migration would have left)."""
    statement = "UPDATE belfry_schema_version SET version_num = %s"
    if db_url.startswith("sqlite:///"):
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as connection:
            connection.execute(statement.replace("%s", "?"), (revision,))
        return
    with psycopg.connect(db_url) as connection:
        connection.execute(statement, (revision,))


def _readyz(server: Belfry) -> httpx.Response:
    return httpx.get(server.url + "/readyz", timeout=10)


def test_readyz_and_cluster_check_the_schema_revision(belfry: Belfry) -> None:
    ready = _readyz(belfry)
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "database": "ok", "migrations": "ok", "clock": "ok"}
    health = belfry.cli_json("cluster")["health"]
    assert health["status"] == "ok" and health["migrations"] == "ok"
    assert belfry.url.endswith(health["node"].rsplit(":", 1)[1])
    assert "(answering): ready" in belfry.cli("cluster").stdout

    db_url = _db_url(belfry)
    with _revision_kept(db_url) as original:
        _set_revision(db_url, "ffffffffffff")
        unready = _readyz(belfry)
        assert unready.status_code == 503
        answer = unready.json()
        assert answer["status"] == "unavailable"
        assert (answer["database"], answer["clock"]) == ("ok", "ok")
        assert "revision ffffffffffff" in answer["migrations"]
        assert f"needs {original}" in answer["migrations"]
        shown = belfry.cli("cluster")
        assert shown.returncode == 0, shown.stderr
        assert "NOT READY: migrations: the database's schema is at revision ffff" in shown.stdout
        assert belfry.cli_json("cluster")["health"]["status"] == "unavailable"
    assert _readyz(belfry).status_code == 200


@contextmanager
def _revision_kept(db_url: str) -> Iterator[str]:
    """The database's schema revision, put back on leaving."""
    query = "SELECT version_num FROM belfry_schema_version"
    if db_url.startswith("sqlite:///"):
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as connection:
            row = connection.execute(query).fetchone()
    else:
        with psycopg.connect(db_url) as connection:
            row = connection.execute(query).fetchone()
    assert row is not None
    try:
        yield str(row[0])
    finally:
        _set_revision(db_url, str(row[0]))


def _json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a log, each of which must be one JSON object."""
    entries = []
    for line in path.read_text().splitlines():
        entry = json.loads(line)  # raises on any line that is not JSON
        assert isinstance(entry, dict), line
        assert {"time", "level", "logger", "message"} <= entry.keys(), line
        assert entry["time"].endswith("Z"), line
        assert datetime.fromisoformat(entry["time"]).tzinfo == UTC
        entries.append(entry)
    return entries


@pytest.fixture
def json_server(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[Belfry, Path]]:
    """A server logging JSON to a file of its own (stdout keeps its start-up banner)."""
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    errors = tmp_path / "server.stderr"
    banner = home / "server.log"
    process = subprocess.Popen(
        [
            BELFRY,
            "server",
            "--db",
            sqlite_url,
            "--listen",
            f"127.0.0.1:{port}",
            "--log-format",
            "json",
        ],
        env={**os.environ, "BELFRY_HOME": str(home)},
        stdout=banner.open("wb"),
        stderr=errors.open("wb"),
    )
    server = Belfry(f"http://127.0.0.1:{port}", home, process, banner)
    server.wait_for(lambda: (home / "admin-token").exists() and _up(server), what="the server")
    try:
        yield server, errors
    finally:
        server.stop()


def _up(server: Belfry) -> bool:
    try:
        return httpx.get(server.url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_json_logs_are_one_object_per_line_and_runs_carry_job_and_id(
    json_server: tuple[Belfry, Path], tmp_path: Path
) -> None:
    server, errors = json_server
    server.apply(
        tmp_path,
        """
        jobs:
          - name: tick
            schedule: "* * * * * *"
            command: echo tick
        """,
    )
    server.wait_for(lambda: len(server.runs("default/tick", "succeeded")) >= 2, what="2 runs")
    # A worker logging JSON too, joining the same server.
    fleet = Fleet(server, _db_url(server), tmp_path)
    worker = fleet.start("w-json", "remote", extra=("--log-format", "json"))
    worker.stop()
    server.stop()  # every line written and flushed

    entries = _json_lines(errors)
    about_runs = [entry for entry in entries if re.match(r"run \d+ ", entry["message"])]
    assert about_runs, entries
    for entry in about_runs:
        run_id = int(entry["message"].split()[1])
        assert (entry.get("job"), entry.get("run_id")) == ("default/tick", run_id), entry
    succeeded = [entry["run_id"] for entry in about_runs if "ended: succeeded" in entry["message"]]
    assert succeeded, about_runs
    lines = [entry["message"] for entry in about_runs if entry["run_id"] == succeeded[0]]
    assert any(" started on " in line for line in lines), lines
    assert any(" ended: succeeded (exit code 0)" in line for line in lines), lines
    assert {entry["level"] for entry in about_runs} == {"INFO"}

    worker_entries = _json_lines(worker.log)
    assert any(entry["message"].startswith("joined ") for entry in worker_entries)
    assert all(entry["logger"].startswith("belfry") for entry in worker_entries)


def test_log_format_is_checked(sqlite_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    bad_flag = subprocess.run(
        [BELFRY, "server", "--db", sqlite_url, "--log-format", "xml"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "BELFRY_HOME": str(home)},
    )
    assert bad_flag.returncode == 2
    assert "--log-format" in bad_flag.stderr
    config = tmp_path / "belfry.yaml"
    config.write_text("log_format: yaml\n")
    bad_key = subprocess.run(
        [BELFRY, "server", "--db", sqlite_url, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "BELFRY_HOME": str(home)},
    )
    assert bad_key.returncode == 2
    assert "log_format: expected text or json, got 'yaml'" in bad_key.stderr
