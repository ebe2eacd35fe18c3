"""The backfill page in a real browser: preview a past range, then run it (confirmed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.sync_api import Dialog, Page, expect

from tests.e2e.conftest import Belfry

HOURLY_JOB = """
jobs:
  - name: hourly
    group: ops
    schedule: "0 * * * *"
    command: "true"
"""


def test_preview_then_run_a_backfill(page: Page, ui_server: Belfry, tmp_path: Path) -> None:
    ui_server.apply(tmp_path, HOURLY_JOB)
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    if now > datetime.now(UTC):
        now -= timedelta(hours=1)
    start = (now - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%S")  # naive: UTC
    end = now.strftime("%Y-%m-%dT%H:%M:%SZ")

    page.goto(ui_server.url + "/jobs/ops/hourly/backfill")
    page.get_by_label("From").fill(start)
    page.get_by_label("To (included)").fill(end)
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_role("heading", name="Preview: nothing run yet")).to_be_visible()
    rows = page.locator("#occurrences tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("will run")
    assert ui_server.runs("ops/hourly") == []

    dialogs: list[str] = []

    def accept(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.get_by_role("button", name="Run backfill").click()
    expect(page.get_by_role("heading", name="3 backfill runs created")).to_be_visible()
    assert dialogs and "3 backfill runs of ops/hourly" in dialogs[0]
    expect(page.locator("#occurrences tbody tr a")).to_have_count(3)
    made = ui_server.runs("ops/hourly")
    assert len(made) == 3 and {run["trigger"] for run in made} == {"backfill"}
