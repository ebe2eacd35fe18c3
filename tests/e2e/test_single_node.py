"""End to end: a real server subprocess on SQLite and PostgreSQL, driven by the real CLI."""

from __future__ import annotations

import itertools
import os
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e.conftest import Belfry

pytestmark = pytest.mark.e2e


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_every_second_job_fires_each_occurrence_once(belfry: Belfry, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    belfry.apply(
        tmp_path,
        f"""
        jobs:
          - name: tick
            schedule: "* * * * * *"
            command: echo "$BELFRY_SCHEDULED_FOR" >> {ledger}; echo "tick $BELFRY_RUN_ID"
        """,
    )
    belfry.wait_for(
        lambda: len(belfry.runs("default/tick", "succeeded")) >= 4, what="4 successful runs"
    )
    lines = ledger.read_text().split()
    assert len(lines) == len(set(lines)), "an occurrence ran twice"
    instants = sorted(datetime.fromisoformat(line.replace("Z", "+00:00")) for line in lines)
    gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(instants)}
    assert gaps <= {1.0}, f"occurrences missed or off-grid: {gaps}"

    runs = belfry.cli_json("runs", "default/tick", "--state", "succeeded")
    assert runs and set(runs[0]) == {
        "id",
        "job",
        "attempt",
        "scheduled_for",
        "state",
        "reason",
        "exit_code",
        "started_at",
        "finished_at",
        "worker",
        "host",
    }
    first = runs[-1]
    assert first["exit_code"] == 0
    assert _instant(first["started_at"]) >= _instant(first["scheduled_for"])
    logs = belfry.cli("logs", str(first["id"]))
    assert logs.returncode == 0 and logs.stdout == f"tick {first['id']}\n"
    table = belfry.cli("runs", "default/tick")
    assert "succeeded" in table.stdout


def test_run_wait_streams_output_and_exits_with_the_run_code(
    belfry: Belfry, tmp_path: Path
) -> None:
    belfry.apply(
        tmp_path,
        """
        jobs:
          - name: three
            schedule: "@yearly"
            command: echo "about to fail"; echo oops >&2; exit 3
          - name: fine
            schedule: "@yearly"
            command: ["printf", "%s|", "two words", "BELFRY_ATTEMPT"]
        """,
    )
    done = belfry.cli("run", "default/three", "--wait")
    assert done.returncode == 3
    assert done.stdout == "about to fail\n"
    assert "oops" in done.stderr and "failed" in done.stderr
    ok = belfry.cli("run", "default/fine", "--wait")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "two words|BELFRY_ATTEMPT|"


@pytest.mark.on_store("sqlite")
def test_kill_reaches_grandchildren(belfry: Belfry, tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    belfry.apply(
        tmp_path,
        f"""
        jobs:
          - name: sleepy
            schedule: "@yearly"
            kill_grace: 1s
            command: sh -c 'sleep 600 & echo $! > {pid_file}; sleep 600'
        """,
    )
    run = belfry.cli_json("run", "default/sleepy")
    belfry.wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), what="pid file")
    grandchild = int(pid_file.read_text())
    assert _pid_alive(grandchild)
    killed = belfry.cli("kill", str(run["id"]))
    assert killed.returncode == 0, killed.stderr
    final = belfry.wait_for(
        lambda: (r := belfry.api("GET", f"/api/v1/runs/{run['id']}"))["state"] == "killed" and r,
        what="killed state",
    )
    assert [e["state"] for e in final["events"]][:3] == ["scheduled", "claimed", "running"]
    belfry.wait_for(lambda: not _pid_alive(grandchild), timeout=5, what="grandchild to die")


@pytest.mark.on_store("postgresql")
def test_timeout_failure_pattern_and_missing_command(belfry: Belfry, tmp_path: Path) -> None:
    belfry.apply(
        tmp_path,
        """
        jobs:
          - name: slow
            schedule: "@yearly"
            timeout: 1s
            kill_grace: 1s
            command: sleep 30
          - name: liar
            schedule: "@yearly"
            failure_pattern: "ERROR"
            command: 'echo "ERROR: disk full"; exit 0'
          - name: missing
            schedule: "@yearly"
            command: ["/no/such/binary-belfry"]
        """,
    )
    slow = belfry.cli("run", "default/slow", "--wait")
    assert slow.returncode != 0 and "timed_out" in slow.stderr
    liar = belfry.cli("run", "default/liar", "--wait", "--output", "json")
    assert liar.returncode == 1
    assert '"state": "failed"' in liar.stdout and "failure_pattern" in liar.stdout
    missing = belfry.cli("run", "default/missing", "--wait")
    assert missing.returncode == 1
    assert "binary-belfry" in missing.stderr
    # The server is still healthy and schedules the rest.
    assert belfry.cli("jobs").returncode == 0


@pytest.mark.on_store("postgresql")
def test_overlap_forbid_skips_with_reason(belfry: Belfry, tmp_path: Path) -> None:
    belfry.apply(
        tmp_path,
        """
        jobs:
          - name: long
            schedule: "* * * * * *"
            overlap: forbid
            command: sleep 2.5
        """,
    )
    skipped = belfry.wait_for(
        lambda: belfry.runs("default/long", "skipped"), what="an overlap skip"
    )
    assert skipped[0]["reason"].startswith("overlap")
    belfry.cli("pause", "default/long")
    active = belfry.runs("default/long", "claimed", "running")
    assert len(active) <= 1, "forbid let two runs overlap"


@pytest.mark.on_store("sqlite")
def test_pause_and_resume(belfry: Belfry, tmp_path: Path) -> None:
    belfry.apply(
        tmp_path,
        """
        jobs:
          - name: beat
            schedule: "* * * * * *"
            command: "true"
        """,
    )
    belfry.wait_for(lambda: belfry.runs("default/beat", "succeeded"), what="a first run")
    paused = belfry.cli("pause", "default/beat", "--note", "deploying")
    assert paused.returncode == 0
    listing = belfry.cli_json("jobs")
    assert listing[0]["paused"] and listing[0]["pause_note"] == "deploying"
    skip = belfry.wait_for(lambda: belfry.runs("default/beat", "skipped"), what="a paused skip")
    assert skip[0]["reason"] == "paused"
    time.sleep(1.5)
    last_success = belfry.runs("default/beat", "succeeded")[0]["id"]
    assert belfry.cli("resume", "default/beat").returncode == 0
    belfry.wait_for(
        lambda: belfry.runs("default/beat", "succeeded")[0]["id"] > last_success,
        what="a run after resume",
    )


@pytest.mark.on_store("sqlite")
def test_bad_input_and_unknown_things(belfry: Belfry, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "jobs:\n  - name: ok\n    schedule: '@daily'\n    command: 'true'\n"
        "  - name: broken\n    schedule: '61 * * * *'\n    command: 'true'\n"
    )
    done = belfry.cli("apply", "-f", str(bad))
    assert done.returncode == 2
    assert f"{bad}:6: " in done.stderr and "schedule" in done.stderr
    assert "Traceback" not in done.stderr
    assert belfry.cli_json("jobs") == [], "a bad file was half-applied"

    unknown = belfry.cli("show", "default/nope")
    assert unknown.returncode == 1 and "no such job: default/nope" in unknown.stderr
    no_run = belfry.cli("logs", "999999")
    assert no_run.returncode == 1 and "no such run" in no_run.stderr

    offline = belfry.cli("jobs", "--server", "http://127.0.0.1:9")
    assert offline.returncode == 1
    assert offline.stderr.count("\n") == 1 and "cannot reach" in offline.stderr


def test_retention_prunes_old_runs(store_url: str, tmp_path: Path) -> None:
    from tests.e2e.conftest import start_server

    config = tmp_path / "belfry.yaml"
    config.write_text("retention: {keep_runs: 3}\nprune_interval: 0.5\n")
    server = start_server(tmp_path / "home", store_url, "--config", str(config))
    try:
        server.apply(
            tmp_path,
            """
            jobs:
              - name: chatty
                schedule: "* * * * * *"
                command: echo hello
            """,
        )
        server.wait_for(
            lambda: (runs := server.runs("default/chatty")) and runs[0]["id"] >= 8,
            what="eight runs",
        )
        time.sleep(1.5)
        finished = server.runs("default/chatty", "succeeded", "failed")
        assert 1 <= len(finished) <= 4, f"retention kept {len(finished)} runs"
        oldest_kept = min(run["id"] for run in finished)
        assert oldest_kept > 3, "the first runs should have been pruned"
    finally:
        server.stop()


@pytest.mark.on_store("postgresql")
def test_apply_diff_dry_run_and_prune(belfry: Belfry, tmp_path: Path) -> None:
    first = tmp_path / "v1.yaml"
    first.write_text(
        "jobs:\n"
        "  - {name: keep, group: ops, schedule: '@daily', command: 'true'}\n"
        "  - {name: drop, group: ops, schedule: '@daily', command: 'true'}\n"
        "  - {name: other, group: elsewhere, schedule: '@daily', command: 'true'}\n"
    )
    assert belfry.cli("apply", "-f", str(first)).returncode == 0
    second = tmp_path / "v2.yaml"
    second.write_text("jobs:\n  - {name: keep, group: ops, schedule: '@hourly', command: 'true'}\n")

    preview = belfry.cli_json("apply", "-f", str(second), "--prune", "--dry-run")
    actions = {change["job"]: change["action"] for change in preview["changes"]}
    assert actions == {"ops/keep": "update", "ops/drop": "delete"}
    assert preview["changes"][0]["fields"]["schedule"] == ["@daily", "@hourly"]
    assert len(belfry.cli_json("jobs")) == 3, "--dry-run changed something"

    applied = belfry.cli("apply", "-f", str(second), "--prune")
    assert applied.returncode == 0 and "1 updated, 1 deleted" in applied.stdout
    jobs = {job["job"]: job for job in belfry.cli_json("jobs")}
    assert set(jobs) == {"ops/keep", "elsewhere/other"}, "prune must stay within the groups"
    next_run = datetime.fromisoformat(jobs["ops/keep"]["next_run"].replace("Z", "+00:00"))
    assert next_run.minute == 0 and next_run.second == 0
    again = belfry.cli("apply", "-f", str(second))
    assert "0 created, 0 updated, 0 deleted, 1 unchanged" in again.stdout


@pytest.mark.on_store("sqlite")
def test_explain_job_uses_the_jobs_own_spread(belfry: Belfry, tmp_path: Path) -> None:
    belfry.apply(
        tmp_path,
        """
        jobs:
          - {name: spread-a, schedule: "H * * * *", timezone: Asia/Kolkata, command: "true"}
          - {name: spread-b, schedule: "H * * * *", command: "true"}
        """,
    )
    for name in ("spread-a", "spread-b"):
        explained = belfry.cli_json("explain", "--job", f"default/{name}", "-n", "3")
        shown = belfry.api("GET", f"/api/v1/jobs/default/{name}")
        stored = [n.replace("+00:00", "Z") for n in shown["next"][:2]]
        # The job's instant may pass between the two calls: then the API is one instant on.
        assert stored in (explained["next"][:2], explained["next"][1:3])
        instants = [_instant(n) for n in explained["next"]]
        assert len({i.minute for i in instants}) == 1, "H picks one minute per job"
    assert belfry.cli_json("explain", "--job", "default/spread-a")["timezone"] == "Asia/Kolkata"


@pytest.mark.on_store("sqlite")
def test_export_round_trips_through_apply(belfry: Belfry, tmp_path: Path) -> None:
    belfry.apply(
        tmp_path,
        """
        jobs:
          - name: nightly
            group: billing
            schedule: ["30 2 * * *", "@hourly"]
            timezone: Europe/Berlin
            command: ["./bin/invoices", "--nightly"]
            timeout: 30m
            retries: {max: 3, backoff: 30s}
            env: {RAILS_ENV: production}
          - {name: beat, schedule: "every 10s", command: "echo hi", overlap: forbid}
        """,
    )
    exported = belfry.cli("export")
    assert exported.returncode == 0, exported.stderr
    path = tmp_path / "exported.yaml"
    path.write_text(exported.stdout)
    assert "RAILS_ENV: production" in exported.stdout
    again = belfry.cli_json("apply", "-f", str(path), "--dry-run")
    assert {change["action"] for change in again["changes"]} == {"unchanged"}
    assert len(again["changes"]) == 2
    only = belfry.cli("export", "--group", "billing")
    assert "billing" in only.stdout and "beat" not in only.stdout
