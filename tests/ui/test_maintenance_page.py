"""Maintenance and a pause that ends by itself, from the browser."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import Belfry
from tests.ui.conftest import first_step, log_in


def test_maintenance_on_and_off_from_the_ui(page: Page, ui_server: Belfry, tmp_path: Path) -> None:
    ui_server.apply(
        tmp_path,
        "jobs:\n  - {name: tick, group: billing, schedule: every 1s, command: 'true'}\n",
    )
    page.goto(ui_server.url + "/maintenance")
    expect(page.get_by_text("Nothing is in maintenance.")).to_be_visible()
    # Starting takes two steps: the first opens the form and its question, and starts nothing.
    start = page.get_by_role("button", name="Start maintenance", exact=True)
    expect(start).to_be_hidden()
    first_step(page, "Start maintenance…").click()
    expect(page.locator("#start-maintenance")).to_contain_text("every job of every group")
    page.get_by_label("Group (empty: everything)").fill("billing")
    page.get_by_label("Note").fill("moving the ledger database")
    assert ui_server.api("GET", "/api/v1/maintenance") == []
    start.click()
    expect(page.get_by_role("cell", name="moving the ledger database")).to_be_visible()
    # The scheduler records the group's occurrences as skipped, with the note.
    ui_server.wait_for(
        lambda: any(
            (run["reason"] or "") == "maintenance: moving the ledger database"
            for run in ui_server.runs("billing/tick", "skipped")
        ),
        what="a maintenance skip",
    )
    assert ui_server.api("GET", "/api/v1/maintenance")[0]["scope"] == "billing"
    page.get_by_role("button", name="End maintenance of billing").click()
    expect(page.get_by_text("Nothing is in maintenance.")).to_be_visible()
    assert ui_server.api("GET", "/api/v1/maintenance") == []
    # A bad group name is one line next to the form (open again), and nothing starts.
    first_step(page, "Start maintenance…").click()
    page.get_by_label("Group (empty: everything)").fill("Not A Group")
    start.click()
    expect(page.get_by_role("alert")).to_contain_text("group:")
    expect(start).to_be_visible()
    assert ui_server.api("GET", "/api/v1/maintenance") == []


def test_global_maintenance_asks_first_without_javascript(
    browser: Browser, ui_server: Belfry
) -> None:
    context = browser.new_context(java_script_enabled=False)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    log_in(tab, ui_server)
    tab.goto(ui_server.url + "/maintenance")
    first_step(tab, "Start maintenance…").click()
    start = tab.get_by_role("button", name="Start maintenance", exact=True)
    expect(start).to_be_visible()
    assert ui_server.api("GET", "/api/v1/maintenance") == []
    start.click()  # no group: everything
    row = tab.get_by_role("row").filter(has_text="everything")
    expect(row).to_contain_text("admin")
    assert [window["scope"] for window in ui_server.api("GET", "/api/v1/maintenance")] == ["*"]
    tab.get_by_role("button", name="End maintenance of everything").click()
    expect(tab.get_by_text("Nothing is in maintenance.")).to_be_visible()
    context.close()


def test_a_pause_for_a_while_shows_when_it_ends(
    page: Page, ui_server: Belfry, tmp_path: Path
) -> None:
    ui_server.apply(tmp_path, "jobs:\n  - {name: nightly, schedule: '@daily', command: 'true'}\n")
    page.goto(ui_server.url + "/jobs/default/nightly")
    first_step(page, "Pause…").click()
    page.get_by_label("Pause note").fill("vendor outage")
    page.get_by_label("Resume after").fill("2h")
    page.get_by_role("button", name="Pause default/nightly").click()
    expect(page.get_by_text("Resumes by itself:")).to_be_visible()
    job = ui_server.api("GET", "/api/v1/jobs/default/nightly")
    assert job["paused"] and job["resume_at"] is not None
    page.goto(ui_server.url + "/jobs")
    expect(page.get_by_text("vendor outage")).to_be_visible()
