"""Logging in, and the jobs list: search, filters, pages."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import Belfry
from tests.ui.conftest import log_in


def test_pages_need_a_login_and_a_wrong_password_says_so(
    browser: Browser, ui_server: Belfry
) -> None:
    context = browser.new_context()
    tab = context.new_page()
    tab.goto(ui_server.url + "/jobs?q=x")
    expect(tab).to_have_url(ui_server.url + "/login?next=/jobs%3Fq%3Dx")
    tab.get_by_label("User name").fill("admin")
    tab.get_by_label("Password").fill("wrong")
    tab.get_by_role("button", name="Log in").click()
    expect(tab.get_by_role("alert")).to_have_text("Wrong user name or password.")
    log_in(tab, ui_server)
    context.close()


def test_the_jobs_list_searches_and_pages(page: Page, ui_server: Belfry, tmp_path: Path) -> None:
    jobs = "\n".join(
        f"  - {{name: job-{n:03d}, group: {'billing' if n % 2 else 'reports'}, "
        f"schedule: '@daily', command: 'true', description: 'number {n}'}}"
        for n in range(120)
    )
    ui_server.apply(tmp_path, "jobs:\n" + jobs + "\n")
    page.goto(ui_server.url + "/jobs")
    expect(page.get_by_text("120 jobs, page 1 of 3")).to_be_visible()
    expect(page.get_by_role("link", name="billing/job-001")).to_be_visible()
    page.get_by_role("link", name="Next →").click()
    expect(page.get_by_text("120 jobs, page 2 of 3")).to_be_visible()
    # Typing searches as you type (htmx), and the URL keeps the search.
    page.get_by_label("Search").fill("job-07 billing")  # every word must match
    expect(page.get_by_text("5 jobs")).to_be_visible()  # 071, 073, ..., 079
    expect(page).to_have_url(re.compile(r"q=job-07(\+|%20)billing"))
    page.get_by_label("Search").fill("job-07")
    expect(page.get_by_text("10 jobs")).to_be_visible()
    page.get_by_label("Group").select_option("reports")
    expect(page.get_by_text("5 jobs")).to_be_visible()  # 070, 072, ..., 078
    expect(page.get_by_role("link", name="reports/job-072")).to_be_visible()


def test_the_jobs_list_works_without_javascript(
    browser: Browser, ui_server: Belfry, tmp_path: Path
) -> None:
    ui_server.apply(tmp_path, "jobs:\n  - {name: plain, schedule: '@daily', command: 'true'}\n")
    context = browser.new_context(java_script_enabled=False)
    tab = context.new_page()
    log_in(tab, ui_server)
    tab.goto(ui_server.url + "/jobs?q=plain")
    expect(tab.get_by_role("link", name="default/plain")).to_be_visible()
    context.close()


SHOW_JOBS = """
jobs:
  - {name: fine, schedule: "@yearly", command: "true"}
  - {name: broken, schedule: "@yearly", command: "exit 3"}
  - {name: napping, schedule: "@yearly", command: "true"}
  - {name: busy, schedule: "@yearly", command: "sleep 60"}
  - {name: untouched, schedule: "@yearly", command: "true"}
"""


def _run_until(server: Belfry, name: str, *states: str) -> None:
    run_id = server.api("POST", f"/api/v1/jobs/default/{name}/run")["id"]
    server.wait_for(
        lambda: server.api("GET", f"/api/v1/runs/{run_id}")["state"] in states,
        what=f"default/{name} to be {' or '.join(states)}",
    )


def test_the_show_filter_lists_failing_paused_or_running_jobs(
    page: Page, ui_server: Belfry, tmp_path: Path
) -> None:
    ui_server.apply(tmp_path, SHOW_JOBS)
    _run_until(ui_server, "fine", "succeeded")
    _run_until(ui_server, "broken", "failed")
    _run_until(ui_server, "busy", "running")
    ui_server.api("POST", "/api/v1/jobs/default/napping/pause", json={"note": "on leave"})
    page.goto(ui_server.url + "/jobs")
    listed = page.locator("tbody tr td:first-child a")
    expect(listed).to_have_count(5)
    for show, label, job in (
        ("failing", "Failing", "default/broken"),
        ("paused", "Paused", "default/napping"),
        ("running", "Running", "default/busy"),
    ):
        page.get_by_label("Show").select_option(label=label)
        expect(page).to_have_url(re.compile(rf"show={show}"))
        expect(listed).to_have_text([job])
        expect(page.get_by_text("1 job", exact=True)).to_be_visible()
    page.get_by_label("Show").select_option(label="All")
    expect(listed).to_have_count(5)
    # A filter and a search together: nothing running matches "broken".
    page.goto(ui_server.url + "/jobs?show=running&q=broken")
    expect(page.get_by_text("No jobs match.")).to_be_visible()
