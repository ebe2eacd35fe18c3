"""Calendars through the real server and CLI: skip, defer, explain, export, delete."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.conftest import Belfry


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


CALENDARS = """
calendars:
  - name: always
    timezone: Asia/Tokyo
    weekly: [{days: MON-SUN}]
  - name: holidays
    timezone: Europe/Berlin
    dates: [2027-12-24, 2027-12-25]
"""


@pytest.mark.on_store("sqlite")
def test_excluded_occurrences_are_recorded_skipped_and_explained(
    belfry: Belfry, tmp_path: Path
) -> None:
    belfry.apply(
        tmp_path,
        CALENDARS
        + """
jobs:
  - {name: closed, schedule: "every 1s", command: "true", exclude: [always]}
  - {name: open, schedule: "every 1s", command: "true", only: [always], exclude: [holidays]}
""",
    )
    skipped = belfry.wait_for(
        lambda: belfry.runs("default/closed", "skipped"), what="a calendar skip"
    )
    assert {run["reason"] for run in skipped} == {"calendar:always"}
    belfry.wait_for(lambda: belfry.runs("default/open", "succeeded"), what="a run in the calendar")
    assert belfry.runs("default/closed", "succeeded", "scheduled", "running") == []

    explained = belfry.cli_json("explain", "--job", "default/closed", "-n", "2")
    assert explained["next"] == []
    assert {item["status"] for item in explained["occurrences"]} == {"skipped"}
    table = belfry.cli("explain", "--job", "default/closed", "-n", "2")
    assert table.returncode == 0 and "skipped: calendar:always" in table.stdout

    page = belfry.api("GET", "/api/v1/jobs/default/open")
    assert len(page["next"]) == 5 and page["upcoming"][0]["status"] == "runs"


@pytest.mark.on_store("postgresql")
def test_deferred_occurrence_starts_when_the_window_opens(belfry: Belfry, tmp_path: Path) -> None:
    # Far enough ahead that an occurrence of "every 5s" falls between the end of the apply
    # (a few seconds on a busy machine) and the opening: that one is deferred.
    opens = (datetime.now(UTC) + timedelta(seconds=14)).replace(microsecond=0)
    if opens.second % 5 == 0:
        opens += timedelta(seconds=1)  # not on an occurrence of "every 5s"
    closes = opens + timedelta(hours=1)
    belfry.apply(
        tmp_path,
        f"""
calendars:
  - name: window
    weekly: [{{days: MON-SUN, from: "{opens:%H:%M:%S}", to: "{closes:%H:%M:%S}"}}]
jobs:
  - name: later
    schedule: "every 5s"
    command: "true"
    only: [window]
    on_excluded: defer
""",
    )

    def deferred() -> list[dict[str, object]]:
        return [
            run
            for run in belfry.runs("default/later", "succeeded")
            if str(run["reason"] or "").startswith("calendar:window: deferred from")
        ]

    (run,) = belfry.wait_for(deferred, timeout=45, what="the deferred run")
    assert _instant(str(run["scheduled_for"])) < opens <= _instant(str(run["started_at"]))
    earlier = [
        r for r in belfry.runs("default/later") if _instant(r["scheduled_for"]) < opens and r != run
    ]
    # The other occurrences before the window were folded into the deferred run.
    assert all(
        r["state"] == "skipped" and r["reason"].startswith("calendar:window") for r in earlier
    )


@pytest.mark.on_store("sqlite")
def test_calendars_export_list_and_delete(belfry: Belfry, tmp_path: Path) -> None:
    belfry.apply(
        tmp_path,
        CALENDARS
        + """
jobs:
  - {name: report, group: billing, schedule: "0 9 * * *", command: "true", exclude: [holidays]}
""",
    )
    listed = belfry.cli_json("calendars")
    assert [item["name"] for item in listed] == ["always", "holidays"]
    assert listed[1]["spec"]["dates"] == ["2027-12-24", "2027-12-25"]
    table = belfry.cli("calendars")
    assert "holidays" in table.stdout and "2 dates" in table.stdout

    exported = belfry.cli("export", "--group", "billing")
    assert exported.returncode == 0, exported.stderr
    assert "holidays" in exported.stdout and "always" not in exported.stdout
    path = tmp_path / "exported.yaml"
    path.write_text(exported.stdout)
    again = belfry.cli_json("apply", "-f", str(path), "--dry-run")
    assert [change["action"] for change in again["changes"]] == ["unchanged"]
    assert [change["action"] for change in again["calendar_changes"]] == ["unchanged"]

    refused = belfry.cli("calendar", "delete", "holidays")
    assert refused.returncode == 1
    assert "still used by job billing/report" in refused.stderr
    assert belfry.cli("calendar", "delete", "always").returncode == 0
    assert [item["name"] for item in belfry.cli_json("calendars")] == ["holidays"]
    shown = belfry.cli_json("calendar", "show", "holidays")
    assert shown["spec"]["timezone"] == "Europe/Berlin"
    missing = belfry.cli("calendar", "show", "nope")
    assert missing.returncode == 1 and "no such calendar: nope" in missing.stderr


@pytest.mark.on_store("postgresql")
def test_unknown_calendar_is_refused_with_nothing_applied(belfry: Belfry, tmp_path: Path) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text(
        'jobs:\n  - {name: report, schedule: "0 9 * * *", command: "true", exclude: [holidays]}\n'
    )
    checked = belfry.cli("validate", "-f", str(path))
    assert checked.returncode == 0
    assert "calendar 'holidays' is not defined in these files" in checked.stderr
    refused = belfry.cli("apply", "-f", str(path))
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "belfry: jobs[default/report].exclude[0]: unknown calendar 'holidays' "
        "(define it under calendars:)"
    ]
    assert json.loads(belfry.cli("jobs", "--output", "json").stdout) == []
