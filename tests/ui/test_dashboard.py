"""The dashboard: running runs with live output, failures, skips with their reasons,
upcoming runs, workers and the cluster; only readable groups; usable on a phone."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import Belfry
from tests.ui.conftest import log_in

RUN_WAIT = 30_000  # ms

JOBS = """
jobs:
  - name: ticker
    schedule: "@yearly"
    command: 'echo tick-1; sleep 3; echo tick-2; sleep 60'
  - name: broken
    schedule: "@yearly"
    command: 'echo bad >&2; exit 3'
  - name: crowded
    schedule: "* * * * * *"
    overlap: forbid
    command: 'sleep 3'
"""


def trigger(server: Belfry, name: str, group: str = "default") -> int:
    return int(server.api("POST", f"/api/v1/jobs/{group}/{name}/run")["id"])


def wait_state(server: Belfry, run_id: int, state: str) -> None:
    server.wait_for(
        lambda: server.api("GET", f"/api/v1/runs/{run_id}")["state"] == state,
        what=f"run {run_id} to be {state}",
    )


def test_the_dashboard_shows_running_runs_failures_and_skips(
    page: Page, ui_server: Belfry, tmp_path: Path
) -> None:
    ui_server.apply(tmp_path, JOBS)
    broken = trigger(ui_server, "broken")
    ticker = trigger(ui_server, "ticker")
    wait_state(ui_server, broken, "failed")
    wait_state(ui_server, ticker, "running")
    ui_server.wait_for(lambda: ui_server.runs("default/crowded", "skipped"), what="a skip")
    page.goto(ui_server.url + "/")
    page.evaluate("window.notReloaded = true")
    running = page.get_by_role("region", name=re.compile("Running now"))
    ticking = running.locator("li", has=page.get_by_role("link", name=f"#{ticker} default/ticker"))
    expect(ticking).to_contain_text("running")
    expect(ticking.locator("pre")).to_contain_text("tick-1")
    # The output lines follow the run without a reload (the list is polled).
    expect(ticking.locator("pre")).to_contain_text("tick-2", timeout=RUN_WAIT)
    assert page.evaluate("window.notReloaded") is True
    failures = page.get_by_role("region", name="Recent failures")
    failed = failures.locator("li", has=page.get_by_role("link", name=f"#{broken} default/broken"))
    expect(failed).to_contain_text("failed")
    expect(failed).to_contain_text("exit 3")
    skips = page.get_by_role("region", name="Recent misses and skips")
    expect(skips.locator("li .reason").first).to_have_text(re.compile(r"^overlap"))
    expect(skips).to_contain_text("default/crowded")
    upcoming = page.get_by_role("region", name="Upcoming")
    expect(upcoming.get_by_role("link", name="default/crowded")).to_be_visible()
    workers = page.get_by_role("region", name="Workers")
    expect(workers.locator("tbody tr")).to_have_count(1)
    expect(workers).to_contain_text("active")
    cluster = page.get_by_role("region", name="Cluster")
    expect(cluster).to_contain_text("ready")
    expect(cluster).to_contain_text("leader")
    # A run that ends leaves the running list by itself.
    ui_server.api("POST", f"/api/v1/runs/{ticker}/kill")
    expect(ticking).to_have_count(0, timeout=RUN_WAIT)


def test_the_dashboard_shows_only_readable_groups(
    browser: Browser, ui_server: Belfry, tmp_path: Path
) -> None:
    ui_server.apply(
        tmp_path,
        """
        jobs:
          - {name: mine, schedule: "@yearly", command: "exit 1"}
          - {name: theirs, group: billing, schedule: "@yearly", command: "exit 1"}
        """,
    )
    mine = trigger(ui_server, "mine")
    theirs = trigger(ui_server, "theirs", "billing")
    wait_state(ui_server, mine, "failed")
    wait_state(ui_server, theirs, "failed")
    ui_server.api("POST", "/api/v1/users", json={"name": "val", "password": "a-long-passphrase"})
    ui_server.api("PUT", "/api/v1/grants/val/default", json={"role": "viewer"})
    context = browser.new_context()
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    log_in(tab, ui_server, "val", "a-long-passphrase")
    tab.goto(ui_server.url + "/")
    failures = tab.get_by_role("region", name="Recent failures")
    expect(failures.get_by_role("link", name=f"#{mine} default/mine")).to_be_visible()
    expect(tab.locator("main")).not_to_contain_text("billing/theirs")
    context.close()


def test_the_dashboard_reads_well_on_a_phone(
    browser: Browser, ui_server: Belfry, tmp_path: Path
) -> None:
    ui_server.apply(
        tmp_path,
        """
        jobs:
          - name: wide
            schedule: "@yearly"
            command: 'printf "%0190d\\n" 7; sleep 60'
          - {name: broken, schedule: "@yearly", command: "exit 2"}
        """,
    )
    wide = trigger(ui_server, "wide")
    broken = trigger(ui_server, "broken")
    wait_state(ui_server, broken, "failed")
    wait_state(ui_server, wide, "running")
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    log_in(tab, ui_server)
    tab.goto(ui_server.url + "/")
    expect(
        tab.get_by_role("region", name=re.compile("Running now")).locator("pre")
    ).to_contain_text("0007")
    for region in ("Recent failures", "Recent misses and skips", "Upcoming", "Workers", "Cluster"):
        heading = tab.get_by_role("heading", name=region)
        heading.scroll_into_view_if_needed()
        expect(heading).to_be_visible()
    # Nothing makes the page scroll sideways (wide tables scroll inside their box).
    assert tab.evaluate("document.documentElement.scrollWidth") <= 390
    tab.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
    for box in tab.locator("main section").all():
        bounds = box.bounding_box()
        assert bounds is not None and bounds["x"] >= 0 and bounds["x"] + bounds["width"] <= 390
    context.close()
