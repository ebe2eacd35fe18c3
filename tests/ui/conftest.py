"""The web UI in a real browser: Playwright driving Debian's chromium against a real server.

The browser is Debian's ``chromium`` package (``scripts/ensure-system-packages.sh``
installs it; ``make test`` runs that first), not one Playwright downloads.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, sync_playwright

from tests.e2e.conftest import Belfry, start_server

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path() -> str:
    given = os.environ.get("BELFRY_TEST_CHROMIUM")
    for candidate in (given, *CHROMIUM_CANDIDATES, shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail(
        "Debian's chromium is not installed: run scripts/ensure-system-packages.sh "
        "(apt-get install chromium), or point BELFRY_TEST_CHROMIUM at a chromium binary",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        # --no-sandbox: the tests run as root in CI containers, where chromium's sandbox
        # cannot start.
        launched = playwright.chromium.launch(
            executable_path=chromium_path(), args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def ui_server(sqlite_url: str, tmp_path: Path) -> Iterator[Belfry]:
    server = start_server(tmp_path / "home", sqlite_url)
    try:
        yield server
    finally:
        server.stop()


def admin_password(server: Belfry) -> str:
    return (server.home / "admin-password").read_text().strip()


def log_in(page: Page, server: Belfry, name: str = "admin", password: str | None = None) -> None:
    page.goto(server.url + "/login")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password or admin_password(server))
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login" not in url)


def first_step(scope: Page | Locator, summary: str) -> Locator:
    """The first step of a destructive action (``confirm.html``): the summary that opens
    its disclosure, e.g. ``Kill…``; the button inside it acts."""
    return scope.locator("details.confirm > summary").filter(has_text=summary)


@pytest.fixture
def page(browser: Browser, ui_server: Belfry) -> Iterator[Page]:
    """A fresh browser tab logged in as the first admin."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    log_in(tab, ui_server)
    try:
        yield tab
    finally:
        context.close()
