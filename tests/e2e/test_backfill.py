"""End to end: ``belfry backfill`` against a real server with its embedded worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.conftest import Belfry

pytestmark = pytest.mark.e2e


def _z(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_backfill_lists_then_runs_each_past_occurrence_once_one_at_a_time(
    belfry: Belfry, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    now = datetime.now(UTC)
    # From a whole ten minutes back: exactly five occurrences, B-50m .. B-10m.
    boundary = now.replace(minute=now.minute - now.minute % 10, second=0, microsecond=0)
    start, end = _z(boundary - timedelta(minutes=50)), _z(boundary - timedelta(seconds=5))
    # Ended 5 s ago: its past occurrences are there to backfill, and none fires meanwhile.
    belfry.apply(
        tmp_path,
        f"""
        jobs:
          - name: report
            schedule: "*/10 * * * *"
            end: "{end}"
            command: echo "start $BELFRY_SCHEDULED_FOR" >> {ledger}; sleep 0.3; echo end >> {ledger}
        """,
    )
    preview = belfry.cli_json(
        "backfill", "default/report", "--from", start, "--to", end, "--dry-run"
    )
    assert preview["dry_run"] is True and preview["runs"] == []
    planned = [item["scheduled_for"] for item in preview["occurrences"]]
    assert len(planned) == 5
    assert {item["status"] for item in preview["occurrences"]} == {"run"}
    assert belfry.runs("default/report") == []

    table = belfry.cli("backfill", "default/report", "--from", start, "--to", end)
    assert table.returncode == 0, table.stderr
    assert "5 backfill runs created" in table.stdout
    done = belfry.wait_for(
        lambda: len(found := belfry.runs("default/report", "succeeded")) == 5 and found,
        what="5 backfill runs to succeed",
    )
    assert {run["trigger"] for run in done} == {"backfill"}
    assert sorted(run["scheduled_for"] for run in done) == sorted(planned)
    # One at a time: each run ended before the next started.
    lines = ledger.read_text().split("\n")[:-1]
    assert len(lines) == 10 and lines[1::2] == ["end"] * 5
    assert sorted(line.split()[1] for line in lines[::2]) == sorted(
        _z(datetime.fromisoformat(p.replace("Z", "+00:00"))) for p in planned
    )

    again = belfry.cli_json("backfill", "default/report", "--from", start, "--to", end)
    assert again["runs"] == []
    assert {item["status"] for item in again["occurrences"]} == {"already ran"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--from", "2020-01-01T00:00:00Z", "--to", "2999-01-01T00:00:00Z"), "--to:"),
        (("--from", "yesterday", "--to", "2020-01-01T00:00:00Z"), "--from:"),
        (("--from", "2020-01-01T00:00:00Z", "--to", "2020-03-01T00:00:00Z"), "--from/--to:"),
    ],
)
def test_bad_ranges_exit_2_with_one_line(
    belfry: Belfry, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    belfry.apply(
        tmp_path,
        """
        jobs:
          - name: often
            schedule: "* * * * *"
            command: "true"
        """,
    )
    done = belfry.cli("backfill", "default/often", *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and message in done.stderr
    # Nothing of the backfill was made (the job's own minutely runs may come and go).
    assert [run for run in belfry.runs("default/often") if run["trigger"] == "backfill"] == []
