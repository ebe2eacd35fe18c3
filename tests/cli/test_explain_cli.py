"""`belfry explain` and `belfry validate` work offline, through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BELFRY = str(Path(sys.executable).with_name("belfry"))


def _belfry(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BELFRY, *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_explain_json_follows_the_interface_across_dst() -> None:
    done = _belfry(
        "explain",
        "30 2 * * *",
        "--tz",
        "Europe/Berlin",
        "--from",
        "2026-03-28T12:00:00Z",
        "-n",
        "2",
        "--output",
        "json",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "schedule": "30 2 * * *",
        "timezone": "Europe/Berlin",
        "description": "At 02:30 every day (Europe/Berlin)",
        # The spring-forward day: 02:30 does not exist, it runs right after the gap.
        "next": ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"],
        "occurrences": [
            {
                "status": "moved",
                "scheduled_for": "2026-03-29T01:00:00Z",
                "runs_at": "2026-03-29T01:00:00Z",
                "local": "2026-03-29 03:00:00 +02:00 (CEST)",
                "note": "02:30 does not exist on 2026-03-29 (DST gap): runs at 03:00 CEST instead",
            },
            {
                "status": "runs",
                "scheduled_for": "2026-03-30T00:30:00Z",
                "runs_at": "2026-03-30T00:30:00Z",
                "local": "2026-03-30 02:30:00 +02:00 (CEST)",
                "note": "",
            },
        ],
    }


def test_explain_table_shows_local_and_utc() -> None:
    done = _belfry(
        "explain",
        "0 9 * * MON",
        "--tz",
        "America/New_York",
        "--from",
        "2027-01-01T00:00:00Z",
        "-n",
        "1",
    )
    assert done.returncode == 0
    assert "2027-01-04 14:00:00Z" in done.stdout and "2027-01-04 09:00:00 -05:00" in done.stdout


def test_bad_schedule_zone_and_time_exit_2_with_one_line() -> None:
    for args in (
        ["explain", "61 * * * *"],
        ["explain", "@daily", "--tz", "Mars/Base"],
        ["explain", "@daily", "--from", "yesterday"],
    ):
        done = _belfry(*args)
        assert done.returncode == 2, args
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_validate_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text("jobs:\n  - name: a\n    schedule: '@daily'\n    command: x\n    timout: 5m\n")
    done = _belfry("validate", "-f", str(path))
    assert done.returncode == 2
    assert f"{path}:5: jobs[0].timout: unknown field" in done.stderr
    good = tmp_path / "good.yaml"
    good.write_text("jobs:\n  - name: a\n    schedule: '@daily'\n    command: x\n")
    assert _belfry("validate", "-f", str(good)).returncode == 0
