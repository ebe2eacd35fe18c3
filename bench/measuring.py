"""What the scale and history benchmarks share: their figures and report, the server
they measure, its API timing, and an every-second job whose schedule-to-start latency is
read from the ledger its command appends to."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import psutil
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fire_latency import PG_ADMIN, _database, _drop, _percentile  # noqa: E402 - database helpers
from tests.e2e.conftest import Belfry, start_server  # noqa: E402 - the tests' server starter

MIB = 1024 * 1024
# A listing of many jobs may take seconds a request: stop after this long (at least one).
LIST_BUDGET = 120.0
# A request that has not answered after this long is given up (and its figure missed).
REQUEST_TIMEOUT = 600.0
TARGET_API_P99_MS = 100.0
# The every-second job: no occurrence may start a second late (bench/fire_latency.py's bar),
# none may be missed or doubled.
TICKER = "bench-tick/tick"
TARGET_FIRE_MS = 1000.0
# Seconds after a server takes the lead (or the every-second job is applied) before its
# occurrences count: runs are made 1.5 s ahead, so earlier ones could not be on time.
FIRE_LEAD = 2.0
# Seconds a started run may take to reach the ledger before a missing one counts as missed.
FIRE_GRACE = 3.0


class BenchError(Exception):
    """The benchmark could not measure (not a missed target)."""


class Stopped(BenchError):
    """SIGTERM or SIGINT: measuring stops; the processes are stopped, the database dropped
    and what was measured is printed."""


def stop_on(signum: int, frame: FrameType | None) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut the clean-up short
    raise Stopped(f"stopped by {signal.Signals(signum).name}")


@dataclass
class Figure:
    what: str
    value: float | None
    unit: str  # s, ms, MiB, %, or "" for a count
    target: float | None = None  # an upper bound
    note: str = ""
    failure: str = ""  # the target is missed whatever the value (e.g. runs never started)

    def _show(self, value: float) -> str:
        digits = {"s": 2, "ms": 1, "MiB": 0, "%": 2}.get(self.unit, 0)
        return f"{value:,.{digits}f} {self.unit}".strip()

    @property
    def missed(self) -> bool:
        if self.target is None:
            return False
        return bool(self.failure) or self.value is None or self.value > self.target

    def cells(self) -> list[str]:
        shown = "n/a" if self.value is None else self._show(self.value)
        if self.target is None:
            return [self.what, shown, "", "", self.note]
        target = f"<= {self._show(self.target)}"
        if self.failure:
            verdict = f"missed: {self.failure}"
        elif self.value is None:
            verdict = "not measured"
        elif self.value <= self.target:
            verdict = "met"
        else:
            ratio = f" ({self.value / self.target:.1f}x)" if self.target else ""
            verdict = f"missed by {self._show(self.value - self.target)}{ratio}"
        return [self.what, shown, target, verdict, self.note]


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    db_url: str
    dbname: str | None  # the PostgreSQL database (None: SQLite)
    home: Path
    server: Belfry | None = None
    figures: list[Figure] = field(default_factory=list)
    # What one phase measured for a later one to compare with.
    kept: dict[str, Any] = field(default_factory=dict)

    def add(self, *figures: Figure) -> None:
        self.figures.extend(figures)
        for figure in figures:
            print(f"  {' | '.join(c for c in figure.cells() if c)}", file=sys.stderr)

    @property
    def live(self) -> Belfry:
        if self.server is None:
            raise BenchError("no server is running")
        return self.server

    def client(self, timeout: float = 600) -> httpx.Client:
        return httpx.Client(
            base_url=self.live.url,
            headers={"Authorization": f"Bearer {self.live.token}"},
            timeout=timeout,
        )

    def start(self) -> Belfry:
        self.server = start_server(self.home, self.db_url, "--no-worker")
        return self.server

    def stop(self) -> float:
        """Stop the server; the time it took (s)."""
        began = time.perf_counter()
        if self.server is not None:
            self.server.stop()
            self.server = None
        return time.perf_counter() - began


def iso(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def apply_jobs(client: httpx.Client, jobs: list[dict[str, Any]]) -> float:
    """POST /api/v1/apply of ``jobs``; its time (s). Every job must be created."""
    began = time.perf_counter()
    response = client.post("/api/v1/apply", json={"jobs": jobs})
    took = time.perf_counter() - began
    if response.status_code != 200:
        raise BenchError(f"apply answered {response.status_code}: {response.text[:500]}")
    created = sum(1 for change in response.json()["changes"] if change["action"] == "create")
    if created != len(jobs):
        raise BenchError(f"apply created {created} of {len(jobs)} jobs")
    return took


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")


def timed_gets(
    client: httpx.Client, paths: Callable[[], str], count: int, budget: float
) -> tuple[list[float], int, str]:
    """Milliseconds of ``count`` GETs (fewer if ``budget`` s runs out, at least one);
    the last response's size; why it stopped early ("" if it did not)."""
    times: list[float] = []
    size = 0
    began = time.perf_counter()
    while len(times) < count and (not times or time.perf_counter() - began < budget):
        path = paths()
        start = time.perf_counter()
        try:
            response = client.get(path)
        except httpx.TimeoutException:
            return times, size, f"no answer within {REQUEST_TIMEOUT:.0f} s"
        times.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
        size = len(response.content)
    return times, size, ""


# --- the every-second job ---------------------------------------------------------------------


@dataclass
class Fires:
    """Schedule-to-start of the every-second job's occurrences due in ``[start, end)``."""

    start: int
    end: int
    latencies: dict[int, float]  # seconds, by instant, of each occurrence that started
    missed: int
    doubled: int

    @property
    def expected(self) -> int:
        return self.end - self.start


def ticker_ledger(bench: Bench) -> Path:
    return bench.workdir / "ticker-ledger.txt"


def apply_ticker(bench: Bench) -> None:
    group, name = TICKER.split("/")
    ticker = {
        "name": name,
        "group": group,
        "schedule": "* * * * * *",
        # Occurrences missed while the server restarts are skipped, not caught up late.
        "misfire": "skip",
        "retention": {"keep_runs": 100_000},
        "command": [
            "bash",
            "-c",
            f"echo $BELFRY_SCHEDULED_FOR $EPOCHREALTIME >> {ticker_ledger(bench)}",
        ],
    }
    with bench.client() as client:
        apply_jobs(client, [ticker])


def fires_between(bench: Bench, start: int, end: int) -> Fires:
    """The every-second job's starts for the occurrences due in ``[start, end)``."""
    starts: dict[int, list[float]] = {}
    ledger = ticker_ledger(bench)
    for line in ledger.read_text().splitlines() if ledger.exists() else []:
        scheduled, started = line.split()
        instant = round(datetime.fromisoformat(scheduled.replace("Z", "+00:00")).timestamp())
        if start <= instant < end:
            starts.setdefault(instant, []).append(float(started) - instant)
    return Fires(
        start,
        end,
        latencies={instant: min(values) for instant, values in starts.items()},
        missed=(end - start) - len(starts),
        doubled=sum(len(values) - 1 for values in starts.values()),
    )


def fire_figures(fires: Fires, when: str, note: str = "") -> list[Figure]:
    latencies = sorted(seconds * 1000 for seconds in fires.latencies.values())
    counted = f"{fires.expected} occurrences due"
    slowest = ""
    if latencies:
        worst = max(fires.latencies, key=lambda instant: fires.latencies[instant])
        slowest = f"due {worst - fires.start} s into the window"
    return [
        Figure(
            f"every-second job {when}: schedule-to-start p50",
            _percentile(latencies, 0.5) if latencies else None,
            "ms",
            note=f"{counted}{'; ' + note if note else ''}",
        ),
        Figure(
            f"every-second job {when}: schedule-to-start p99",
            _percentile(latencies, 0.99) if latencies else None,
            "ms",
            TARGET_FIRE_MS,
        ),
        Figure(
            f"every-second job {when}: schedule-to-start max",
            max(latencies) if latencies else None,
            "ms",
            TARGET_FIRE_MS,
            slowest,
        ),
        Figure(f"every-second job {when}: missed", fires.missed, "", 0),
        Figure(f"every-second job {when}: doubled", fires.doubled, "", 0),
    ]


# --- the report ------------------------------------------------------------------------------


def machine(kind: str) -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    database = "SQLite"
    if kind == "postgresql":
        with psycopg.connect(PG_ADMIN) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        database = f"PostgreSQL {row[0] if row else '?'}"
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{platform.node()}: {os.cpu_count()} cores ({model}), "
        f"{psutil.virtual_memory().total / MIB / 1024:.1f} GiB, "
        f"{platform.python_implementation()} {platform.python_version()}, {database}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {load}"
    )


def render(bench: Bench, described: str) -> str:
    header = ["what", "measured", "target", "verdict", "notes"]
    lines = [f"machine: {described}", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|---|---:|---:|---|---|")
    lines += ["| " + " | ".join(figure.cells()) + " |" for figure in bench.figures]
    missed = [figure.what for figure in bench.figures if figure.missed]
    lines.append("")
    lines.append(f"targets missed: {len(missed)}" + (": " + "; ".join(missed) if missed else ""))
    return "\n".join(lines)


def run_bench(
    script: str,
    args: argparse.Namespace,
    kind: str,
    phases: list[tuple[str, Callable[[Bench], None]]],
) -> None:
    """Run ``phases`` on a fresh database of ``kind`` (dropped at the end), print the
    table, exit 1 if a target was missed and 2 if the benchmark itself failed."""
    described = machine(kind)
    print(f"machine: {described}", file=sys.stderr)
    workdir = Path(tempfile.mkdtemp(prefix=f"belfry-{script}-"))
    db_url, dbname = _database(kind, workdir)
    bench = Bench(args, workdir, db_url, dbname, workdir / "home")
    failed = None
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop_on)
    try:
        for name, phase in phases:
            print(f"{name}:", file=sys.stderr)
            try:
                phase(bench)
            except (BenchError, AssertionError, httpx.HTTPError, OSError, psycopg.Error) as error:
                failed = f"{name}: {type(error).__name__}: {error}"
                break
    finally:
        bench.stop()
        _drop(dbname)
    print()
    print(f"`python bench/{script}.py {' '.join(sys.argv[1:])}` ({kind})")
    print()
    print(render(bench, described))
    if failed:
        log = bench.home / "server.log"
        tail = log.read_text()[-3000:] if log.exists() else ""
        print(f"\nbenchmark failed in {failed}\nserver log tail:\n{tail}", file=sys.stderr)
        print(f"logs kept in {workdir}", file=sys.stderr)
        sys.exit(2)
    shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(1 if any(figure.missed for figure in bench.figures) else 0)
