"""The backfill page in a real browser: reached from the job page, preview a past range,
then run it (confirmed in a second step)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.e2e.conftest import Belfry
from tests.ui.conftest import first_step

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

    page.goto(ui_server.url + "/jobs/ops/hourly")
    page.get_by_role("link", name="Backfill…").click()
    expect(page).to_have_url(ui_server.url + "/jobs/ops/hourly/backfill")
    expect(page.get_by_role("heading", name="Backfill ops/hourly")).to_be_visible()
    page.get_by_label("From").fill(start)
    page.get_by_label("To (included)").fill(end)
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_role("heading", name="Preview: nothing run yet")).to_be_visible()
    rows = page.locator("#occurrences tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("will run")
    assert ui_server.runs("ops/hourly") == []

    # Running them takes a second step: the first opens the question and runs nothing.
    run = page.get_by_role("button", name="Run 3 backfill runs")
    expect(run).to_be_hidden()
    first_step(page, "Run backfill…").click()
    expect(page.locator("#confirm-backfill")).to_contain_text("Run 3 backfill runs of ops/hourly?")
    expect(run).to_be_visible()
    assert ui_server.runs("ops/hourly") == []
    run.click()
    expect(page.get_by_role("heading", name="3 backfill runs created")).to_be_visible()
    expect(page.locator("#occurrences tbody tr a")).to_have_count(3)
    made = ui_server.runs("ops/hourly")
    assert len(made) == 3 and {run["trigger"] for run in made} == {"backfill"}
