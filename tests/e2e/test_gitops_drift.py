"""GitOps end to end: jobs kept in files, a pause made with the CLI, ``belfry diff -f``
showing it, ``apply`` refusing to undo it without ``--force``."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import Belfry

FILES = """
jobs:
  - name: invoices
    group: billing
    schedule: "0 3 * * *"
    command: ./bin/invoices
  - name: ledger
    group: billing
    schedule: "30 3 * * *"
    command: ./bin/ledger
"""


@pytest.mark.on_store("postgresql")
def test_diff_shows_drift_and_apply_keeps_it_until_forced(belfry: Belfry, tmp_path: Path) -> None:
    files = tmp_path / "jobs.yaml"
    files.write_text(textwrap.dedent(FILES))
    assert belfry.cli("apply", "-f", str(files)).returncode == 0

    in_sync = belfry.cli("diff", "-f", str(files))
    assert in_sync.returncode == 0, in_sync.stdout + in_sync.stderr
    assert "in sync: 2 jobs match the files" in in_sync.stdout

    paused = belfry.cli("pause", "billing/invoices", "--note", "bank outage")
    assert paused.returncode == 0, paused.stderr
    diff = belfry.cli("diff", "-f", str(files))
    assert diff.returncode == 1, diff.stdout + diff.stderr
    assert "update" in diff.stdout and "paused: True -> False" in diff.stdout
    assert "changed outside the files since their last apply" in diff.stdout
    assert "paused: False -> True" in diff.stdout and "by token:first-admin" in diff.stdout
    assert "billing/ledger" not in diff.stdout

    shown = belfry.cli("show", "billing/invoices")
    assert (
        "CHANGED OUTSIDE THE FILES" in shown.stdout
        and "paused changed by token:first-admin" in shown.stdout
    )

    refused = belfry.cli("apply", "-f", str(files))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "billing/invoices (paused changed by token:first-admin" in refused.stderr
    assert "--force" in refused.stderr
    assert belfry.cli_json("show", "billing/invoices")["paused"] is True, "nothing applied"

    forced = belfry.cli("apply", "-f", str(files), "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "overwrote changes made outside the files" in forced.stdout
    detail = belfry.cli_json("show", "billing/invoices")
    assert detail["paused"] is False and detail["drift"] is None
    assert belfry.cli("diff", "-f", str(files)).returncode == 0


@pytest.mark.on_store("sqlite")
def test_a_change_on_the_ui_apply_page_is_drift_and_diff_lists_what_prune_would_delete(
    belfry: Belfry, tmp_path: Path
) -> None:
    files = tmp_path / "jobs.yaml"
    files.write_text(textwrap.dedent(FILES))
    belfry.cli("apply", "-f", str(files))
    # What the UI's apply page sends: a hand-made job in a group the files own.
    hotfix = {"name": "hotfix", "group": "billing", "schedule": "@hourly", "command": "true"}
    belfry.api("POST", "/api/v1/apply", json={"jobs": [hotfix], "source": "ui"})

    diff = belfry.cli("diff", "-f", str(files), "--prune")
    assert diff.returncode == 1
    assert "delete" in diff.stdout and "billing/hotfix" in diff.stdout
    assert "created outside the files" in diff.stdout
    as_json = belfry.cli("diff", "-f", str(files), "--prune", "--output", "json")
    assert as_json.returncode == 1, "differs, in JSON too"
    detail = json.loads(as_json.stdout)
    assert [c["job"] for c in detail["changes"] if c["action"] == "delete"] == ["billing/hotfix"]

    refused = belfry.cli("apply", "-f", str(files), "--prune")
    assert (
        refused.returncode == 1 and "created outside files by token:first-admin" in refused.stderr
    )
    assert belfry.cli("apply", "-f", str(files)).returncode == 0, "without prune: no conflict"
    assert belfry.cli("apply", "-f", str(files), "--prune", "--force").returncode == 0
    jobs = belfry.cli_json("jobs", "--group", "billing")
    assert sorted(job["job"] for job in jobs) == ["billing/invoices", "billing/ledger"]
