"""Maintenance and a pause that ends by itself, from the browser."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from tests.e2e.conftest import Belfry


def test_maintenance_on_and_off_from_the_ui(page: Page, ui_server: Belfry, tmp_path: Path) -> None:
    ui_server.apply(
        tmp_path,
        "jobs:\n  - {name: tick, group: billing, schedule: every 1s, command: 'true'}\n",
    )
    page.goto(ui_server.url + "/maintenance")
    expect(page.get_by_text("Nothing is in maintenance.")).to_be_visible()
    page.get_by_label("Group (empty: everything)").fill("billing")
    page.get_by_label("Note").fill("moving the ledger database")
    page.get_by_role("button", name="Start maintenance").click()
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
    # A bad group name is one line next to the form, and nothing starts.
    page.get_by_label("Group (empty: everything)").fill("Not A Group")
    page.get_by_role("button", name="Start maintenance").click()
    expect(page.get_by_role("alert")).to_contain_text("group:")
    assert ui_server.api("GET", "/api/v1/maintenance") == []


def test_a_pause_for_a_while_shows_when_it_ends(
    page: Page, ui_server: Belfry, tmp_path: Path
) -> None:
    ui_server.apply(tmp_path, "jobs:\n  - {name: nightly, schedule: '@daily', command: 'true'}\n")
    page.goto(ui_server.url + "/jobs/default/nightly")
    page.get_by_label("Pause note").fill("vendor outage")
    page.get_by_label("Resume after").fill("2h")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_text("Resumes by itself:")).to_be_visible()
    job = ui_server.api("GET", "/api/v1/jobs/default/nightly")
    assert job["paused"] and job["resume_at"] is not None
    page.goto(ui_server.url + "/jobs")
    expect(page.get_by_text("vendor outage")).to_be_visible()
