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
