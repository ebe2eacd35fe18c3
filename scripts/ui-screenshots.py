#!/usr/bin/env python3
"""Screenshots of the web UI for the README: ``docs/screenshots/PAGE-{light,dark}.png``.

Starts a throwaway ``belfry server`` (SQLite, embedded worker) in a temporary directory,
applies ``examples/jobs.yaml`` and a few more jobs (one failing, alerting through a
webhook to a receiver on loopback), runs some of them, logs in with Playwright driving
Debian's chromium and saves each page in the light and the dark colour scheme, plus two
at a phone's width. Some pages are shown in use (``SCENES``): the apply page with a
preview, the backfill page with a preview and its confirmation open, the crontab
importer with a conversion, the maintenance page with a window in force and the start
form open. A page that does not render yet is captured as it is (its status is printed).

    .venv/bin/python scripts/ui-screenshots.py [--out docs/screenshots] [--chromium PATH]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the e2e tests' server helper, reused as it is

from playwright.sync_api import Page, ViewportSize, sync_playwright  # noqa: E402
from tests.e2e.conftest import Belfry, free_port, start_server  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
DESKTOP = ViewportSize(width=1280, height=860)
PHONE = ViewportSize(width=390, height=844)
FINAL = {"succeeded", "failed", "timed_out", "killed", "lost", "skipped"}

# More than the examples: a second group, an alert channel, a job that fails.
EXTRA_JOBS = """\
channels:
  - name: ops-hook
    webhook: {{url: "http://127.0.0.1:{port}/belfry", secret: screenshot-secret}}
groups:
  - name: reports
    notify: [ops-hook]
    description: Reports for the finance team.
jobs:
  - name: daily-revenue
    group: reports
    schedule: "30 6 * * MON-FRI"
    timezone: Europe/Berlin
    exclude: [public-holidays]
    command: echo "revenue report written"
    description: Revenue of the previous working day.
  - name: sync-ledger
    group: reports
    schedule: every 15m
    command: 'echo "ERROR: ledger API answered 503" >&2; exit 3'
    retries: {{max: 0}}
    description: Pulls the ledger; fails while the API is down.
"""


# Pasted on the apply page and previewed: one job changed, one added.
APPLY_PREVIEW = """\
jobs:
  - name: daily-revenue
    group: reports
    schedule: "0 7 * * MON-FRI"
    timezone: Europe/Berlin
    exclude: [public-holidays]
    command: echo "revenue report written"
    description: Revenue of the previous working day.
  - name: weekly-summary
    group: reports
    schedule: "0 8 * * MON"
    command: echo "summary sent"
"""


class _Receiver(BaseHTTPRequestHandler):
    """A webhook endpoint that accepts every alert."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def receiver() -> Iterator[int]:
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.shutdown()


def run_and_wait(server: Belfry, job: str, timeout: float = 60) -> int:
    """Trigger ``job`` now and wait until its run ends; the run's id."""
    group, name = job.split("/")
    made = server.api("POST", f"/api/v1/jobs/{group}/{name}/run")
    run_id = int(made["id"])
    server.wait_for(
        lambda: server.api("GET", f"/api/v1/runs/{run_id}")["state"] in FINAL,
        timeout=timeout,
        what=f"run {run_id} of {job} to end",
    )
    return run_id


def prepare(server: Belfry, work: Path, hook_port: int) -> dict[str, int]:
    server.apply(work, (ROOT / "examples" / "jobs.yaml").read_text())
    server.apply(work, textwrap.dedent(EXTRA_JOBS.format(port=hook_port)))
    run_and_wait(server, "demo/disk-report")
    runs = {"failed": run_and_wait(server, "reports/sync-ledger")}
    run_and_wait(server, "demo/log-check")
    run_and_wait(server, "reports/daily-revenue")
    # The failure's alert is delivered within a second or two.
    server.wait_for(
        lambda: server.api("GET", "/api/v1/deliveries"), timeout=20, what="an alert delivery"
    )
    return runs


def log_in(page: Page, server: Belfry) -> None:
    page.goto(server.url + "/login")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill((server.home / "admin-password").read_text().strip())
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login" not in url)


# Pasted on the crontab page and converted.
CRONTAB = """\
MAILTO=ops@example.com
CRON_TZ=Europe/Berlin
# nightly backup of the ledger database
30 2 * * * /usr/local/bin/backup --db ledger
*/5 9-17 * * MON-FRI curl -fsS https://example.com/ping
@reboot /usr/local/bin/warm-cache
"""

# A schedule whose next instants cross a DST change, for the explain page.
EXPLAIN = "/explain?" + urlencode(
    {"schedule": "30 2 * * *", "tz": "Europe/Berlin", "n": 6, "from": "2027-03-25T00:00:00Z"}
)


def _apply_preview(page: Page) -> None:
    page.get_by_label("Job file (YAML)").fill(APPLY_PREVIEW)
    page.get_by_role("button", name="Preview").click()
    page.wait_for_selector("section.outcome")


def _backfill_preview(page: Page) -> None:
    now = datetime.now(UTC)
    # A few working days: the preview and its confirmation fit the window.
    for label, instant in (("From", now - timedelta(days=4)), ("To (included)", now)):
        page.get_by_label(label).fill(instant.strftime("%Y-%m-%dT%H:%M:%SZ"))
    page.get_by_role("button", name="Preview").click()
    page.wait_for_selector("section.outcome")
    # Its confirmation open: the second, explicit step every destructive action takes.
    page.locator("details.confirm > summary").filter(has_text="Run backfill…").click()


def _crontab_converted(page: Page) -> None:
    page.get_by_label("Crontab", exact=True).fill(CRONTAB)
    page.get_by_role("button", name="Convert").click()
    page.wait_for_selector("section.outcome")


def _maintenance_start_open(page: Page) -> None:
    page.locator("details.confirm > summary").filter(has_text="Start maintenance…").click()


# What to do on a page before its shot, to show it in use.
SCENES: dict[str, Callable[[Page], None]] = {
    "apply": _apply_preview,
    "backfill": _backfill_preview,
    "crontab": _crontab_converted,
    "maintenance": _maintenance_start_open,
}


def shoot(page: Page, url: str, path: Path, scene: Callable[[Page], None] | None = None) -> None:
    response = page.goto(url)
    code = response.status if response is not None else "?"
    if scene is not None:
        scene(page)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(path))
    print(f"  {path.name}: {url} ({code})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--chromium", default=CHROMIUM, help="the chromium binary to drive")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="belfry-shots-") as tmp, receiver() as hook_port:
        work = Path(tmp)
        server = start_server(work / "home", f"sqlite:///{work / 'belfry.db'}")
        try:
            runs = prepare(server, work, hook_port)
            # A window in force on the maintenance page (a group no other shot is of).
            server.api(
                "PUT", "/api/v1/maintenance/ledger", json={"note": "moving the ledger database"}
            )
            pages = {
                "dashboard": "/",
                "jobs": "/jobs",
                "job": "/jobs/reports/sync-ledger",
                "run": f"/runs/{runs['failed']}",
                "workers": "/workers",
                "cluster": "/cluster",
                "alerts": "/channels",
                "audit": "/audit",
                "calendar": "/calendars/office-hours",
                "apply": "/apply",
                "tokens": "/tokens",
                "maintenance": "/maintenance",
                "backfill": "/jobs/reports/daily-revenue/backfill",
                "crontab": "/import-crontab",
                "explain": EXPLAIN,
            }
            with sync_playwright() as playwright:
                # --no-sandbox: chromium's sandbox cannot start as root in containers.
                browser = playwright.chromium.launch(
                    executable_path=args.chromium, args=["--no-sandbox"]
                )
                for scheme in ("light", "dark"):
                    context = browser.new_context(viewport=DESKTOP, color_scheme=scheme)
                    page = context.new_page()
                    log_in(page, server)
                    for name, path in pages.items():
                        shot = args.out / f"{name}-{scheme}.png"
                        shoot(page, server.url + path, shot, SCENES.get(name))
                    context.close()
                phone = browser.new_context(
                    viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True
                )
                page = phone.new_page()
                log_in(page, server)
                for name in ("jobs", "run"):
                    shoot(page, server.url + pages[name], args.out / f"{name}-phone.png")
                phone.close()
                browser.close()
        finally:
            server.stop()
    print(f"screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    started = time.monotonic()
    status = main()
    print(f"done in {time.monotonic() - started:.0f}s")
    sys.exit(status)
