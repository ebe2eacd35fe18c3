"""Job chains end to end: a real server runs jobs after others, `show` says how they
are linked, and apply refuses a cycle."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import BELFRY, Belfry

CHAIN = """
jobs:
  - name: extract
    group: etl
    schedule: "@yearly"
    command: "echo extracted"
  - name: audit
    group: etl
    schedule: "@yearly"
    command: "echo audited"
  - name: transform
    group: etl
    after: [extract]
    command: "echo transformed"
  - name: on-error
    group: etl
    after: {jobs: [extract], on: failure}
    command: "echo cleaning up"
  - name: report
    group: etl
    after: {jobs: [transform, audit], within: 1h}
    command: "echo reported"
"""


def _chained(belfry: Belfry, job: str) -> list[dict[str, object]]:
    return [run for run in belfry.runs(job) if run["state"] != "skipped"]


def test_jobs_run_after_others_and_a_fan_in_waits_for_all(belfry: Belfry, tmp_path: Path) -> None:
    belfry.apply(tmp_path, CHAIN)
    ran = belfry.cli("run", "etl/extract", "--wait")
    assert ran.returncode == 0, ran.stdout + ran.stderr

    [transform] = belfry.wait_for(
        lambda: [r for r in _chained(belfry, "etl/transform") if r["state"] == "succeeded"],
        what="transform to run after extract",
    )
    logs = belfry.cli("logs", str(transform["id"]))
    assert "transformed" in logs.stdout
    detail = belfry.cli_json("show", "etl/transform")
    assert detail["schedule"] is None and detail["next"] == []
    assert detail["after"] == "after etl/extract succeeds"
    assert detail["recent_runs"][0]["reason"].startswith("after etl/extract succeeded (run ")
    shown = belfry.cli("show", "etl/extract")
    assert "followed by: etl/on-error, etl/transform" in shown.stdout
    listed = belfry.cli("jobs", "--group", "etl")
    assert "after etl/extract succeeds" in listed.stdout

    # The fan-in has transform's run, and waits for audit's.
    assert _chained(belfry, "etl/report") == []
    assert belfry.cli("run", "etl/audit", "--wait").returncode == 0
    belfry.wait_for(
        lambda: [r for r in _chained(belfry, "etl/report") if r["state"] == "succeeded"],
        what="report to run once transform and audit have both succeeded",
    )
    assert len(_chained(belfry, "etl/report")) == 1
    # extract succeeded: the failure follower never ran.
    assert _chained(belfry, "etl/on-error") == []


@pytest.mark.on_store("sqlite")
def test_apply_refuses_a_cycle_and_a_missing_job(belfry: Belfry, tmp_path: Path) -> None:
    belfry.apply(tmp_path, CHAIN)
    looping = tmp_path / "loop.yaml"
    looping.write_text(
        textwrap.dedent(
            """
            jobs:
              - name: extract
                group: etl
                after: [report]
                command: "echo extracted"
            """
        )
    )
    refused = belfry.cli("apply", "-f", str(looping))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "jobs would wait for each other" in refused.stderr
    assert (
        "(each runs after the next): etl/extract -> etl/report -> etl/transform -> etl/extract"
        in refused.stderr
    )
    assert belfry.cli_json("show", "etl/extract")["schedule"] == "@yearly", "nothing applied"

    missing = tmp_path / "missing.yaml"
    missing.write_text("jobs:\n  - {name: orphan, group: etl, after: [nowhere], command: 'true'}\n")
    refused = belfry.cli("apply", "-f", str(missing))
    assert refused.returncode == 2
    assert "jobs[etl/orphan].after: no job etl/nowhere" in refused.stderr
    gone = belfry.cli("pause", "etl/extract")  # the job is still there, and usable
    assert gone.returncode == 0


def test_validate_finds_a_cycle_offline_and_warns_of_jobs_not_in_the_files(
    tmp_path: Path,
) -> None:
    looping = tmp_path / "loop.yaml"
    looping.write_text(
        textwrap.dedent(
            """
            jobs:
              - name: a
                group: etl
                after: [b]
                command: "true"
              - name: b
                group: etl
                after: [a]
                command: "true"
            """
        )
    )
    done = subprocess.run(
        [BELFRY, "validate", "-f", str(looping)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert f"{looping}:3: jobs[etl/a].after: jobs would wait for each other" in done.stderr
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text("jobs:\n  - {name: b, group: etl, after: [ops/x], command: 'true'}\n")
    done = subprocess.run(
        [BELFRY, "validate", "-f", str(elsewhere)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "job 'ops/x' is not in these files (apply needs it on the server)" in done.stderr
