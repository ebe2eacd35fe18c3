"""Web UI speed with many jobs: how long the main pages take at 10,000 jobs.

Starts a ``belfry server`` (SQLite by default, ``--db`` for another), applies ``--jobs``
jobs in 20 groups through the API, runs a few of them so the pages have history, logs in
through the login form like a browser, then requests each page ``--requests`` times and
prints p50 / p99 / max in milliseconds: the jobs list (first page, a search, a group
filter, a state filter), a job page, a run page and the dashboard.

Usage: python bench/ui_pages.py [--jobs 10000] [--requests 30] [--db URL]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import start_server  # noqa: E402 - the tests' own server starter


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--db", default=None, help="database URL (default: a SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="belfry-ui-bench-") as work:
        home = Path(work) / "home"
        db = args.db or f"sqlite:///{Path(work) / 'belfry.db'}"
        server = start_server(home, db)
        try:
            api = httpx.Client(
                base_url=server.url,
                headers={"Authorization": f"Bearer {server.token}"},
                timeout=300,
            )
            jobs = [
                {
                    "name": f"job-{n:05d}",
                    "group": f"team-{n % 20:02d}",
                    "schedule": f"{n % 60} {n % 24} * * *",
                    "command": "true",
                    "description": f"benchmark job number {n}",
                }
                for n in range(args.jobs)
            ]
            began = time.perf_counter()
            api.post("/api/v1/apply", json={"jobs": jobs}).raise_for_status()
            print(f"apply of {args.jobs} jobs: {time.perf_counter() - began:.1f} s")
            run_id = 0
            for n in range(5):
                made = api.post(f"/api/v1/jobs/team-{n:02d}/job-{n:05d}/run").json()
                run_id = made["id"]
            time.sleep(3)  # the runs end
            password = (home / "admin-password").read_text().strip()
            browser = httpx.Client(base_url=server.url, timeout=60)
            login = browser.post(
                "/login", data={"name": "admin", "password": password, "next": "/"}
            )
            assert login.status_code == 303, login.text  # to the dashboard, with the cookie
            pages = {
                "jobs, first page": "/jobs",
                "jobs, search": "/jobs?q=number+4242",
                "jobs, one group": "/jobs?group=team-07",
                "jobs, failing": "/jobs?show=failing",
                "a job": "/jobs/team-01/job-00001",
                "a run": f"/runs/{run_id}",
                "dashboard": "/",
            }
            print(f"{'page':<18} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
            for label, path in pages.items():
                times = []
                for _ in range(args.requests):
                    start = time.perf_counter()
                    browser.get(path).raise_for_status()
                    times.append((time.perf_counter() - start) * 1000)
                print(
                    f"{label:<18} {statistics.median(times):8.1f} "
                    f"{_percentile(times, 0.99):8.1f} {max(times):8.1f}"
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
