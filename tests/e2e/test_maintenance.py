"""Maintenance, drains and pauses that end by themselves, on a real server and CLI."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e.conftest import Belfry, start_server

pytestmark = pytest.mark.e2e

JOBS = """
jobs:
  - name: tick
    group: g
    schedule: "* * * * * *"
    command: sleep 1.5
  - name: other
    group: h
    schedule: "* * * * * *"
    command: "true"
"""


@pytest.fixture
def server(sqlite_url: str, tmp_path: Path) -> Iterator[Belfry]:
    belfry = start_server(tmp_path / "home", sqlite_url)
    try:
        yield belfry
    finally:
        belfry.stop()


def test_maintenance_skips_lets_running_runs_finish_and_ends(
    server: Belfry, tmp_path: Path
) -> None:
    server.apply(tmp_path, JOBS)
    running = server.wait_for(lambda: server.runs("g/tick", "running"), what="a running tick")
    on = server.cli("maintenance", "on", "--group", "g", "--note", "x")
    assert on.returncode == 0, on.stderr
    assert "maintenance on: group g: x" in on.stdout
    server.wait_for(
        lambda: [r for r in server.runs("g/tick", "skipped") if r["reason"] == "maintenance: x"],
        what="a tick skipped for maintenance",
    )
    # The run that was running finishes; the other group goes on.
    finished = server.wait_for(
        lambda: [r for r in server.runs("g/tick", "succeeded") if r["id"] == running[0]["id"]],
        what="the running tick to finish",
    )
    assert finished
    assert server.runs("h/other", "succeeded")
    status = server.cli_json("maintenance")
    assert [(w["scope"], w["note"]) for w in status] == [("g", "x")]

    off = server.cli("maintenance", "off", "--group", "g")
    assert off.returncode == 0, off.stderr
    ended_at = time.time()
    server.wait_for(
        lambda: [
            r
            for r in server.runs("g/tick", "succeeded", "running")
            if r["started_at"] and _epoch(r["started_at"]) > ended_at
        ],
        what="ticks to run again",
    )
    assert server.cli("maintenance", "off", "--group", "g").returncode == 1  # not in it now
    assert server.cli("maintenance", "on", "--group", "Bad/Name").returncode != 0


def test_drain_takes_nothing_new_until_undrained(server: Belfry, tmp_path: Path) -> None:
    server.apply(tmp_path, JOBS)
    server.wait_for(lambda: server.runs("h/other", "succeeded"), what="a run")
    [worker] = server.api("GET", "/api/v1/cluster")["workers"]
    drained = server.cli("worker", "drain", worker["name"])
    assert drained.returncode == 0, drained.stderr
    assert drained.stdout.strip() == f"worker {worker['name']}: draining"
    table = server.cli("cluster")
    assert "draining" in table.stdout
    time.sleep(1.5)  # claims in flight end
    mark = max(r["id"] for r in server.runs("h/other"))
    time.sleep(2)
    assert not [r for r in server.runs("h/other", "running", "succeeded") if r["id"] > mark + 1]
    assert server.cli("worker", "undrain", worker["name"]).returncode == 0
    server.wait_for(
        lambda: [r for r in server.runs("h/other", "succeeded") if r["id"] > mark + 1],
        what="runs after the undrain",
    )
    actions = {entry["action"] for entry in server.api("GET", "/api/v1/audit")}
    assert {"worker.drain", "worker.undrain"} <= actions


def test_a_pause_for_some_seconds_resumes_by_itself(server: Belfry, tmp_path: Path) -> None:
    server.apply(tmp_path, JOBS)
    # Long enough for two CLI calls on a busy machine (each ~1.5 s) to see it paused.
    done = server.cli("pause", "h/other", "--note", "deploy", "--for", "8s")
    assert done.returncode == 0, done.stderr
    listed = server.cli("jobs", "--group", "h")
    assert "yes until" in listed.stdout and "deploy" in listed.stdout
    server.wait_for(lambda: server.runs("h/other", "skipped"), what="a paused skip")
    server.wait_for(
        lambda: not server.api("GET", "/api/v1/jobs/h/other")["paused"],
        timeout=30,
        what="the pause to end",
    )
    audit = server.api("GET", "/api/v1/audit")
    assert any(e["action"] == "job.resume" and e["actor"] == "belfry" for e in audit)
    bad = server.cli("pause", "h/other", "--for", "soon")
    assert bad.returncode == 2 and "--for" in bad.stderr


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
