"""Belfry at scale (issue 10, first part): one server with 100,000 jobs.

Against a real ``belfry server --no-worker`` process on a fresh database (PostgreSQL by
default: created here and dropped at the end; ``--db sqlite`` for a SQLite file):

1. load: ``--jobs`` enabled hourly jobs (``M * * * *``, M = n mod 60: spread evenly over
   the hour), in groups of ``--group-size``, applied through ``POST /api/v1/apply`` in
   batches of ``--batch``: the time of each batch and of the whole load. Each job has a
   ``start`` bound a day ahead, so that none of them fires while the benchmark runs (the
   idle and latency figures are then about a server with nothing due).
2. start-up: the server is stopped and started again on the loaded database. Measured
   from the ``Popen`` of ``belfry server`` until ``/healthz`` answers 200, until ``/readyz``
   answers 200, and until the scheduler has made its first pass: a canary job (a one-off
   ``at`` instant the stopped server did not reach, in a pool no worker serves) has its
   overdue occurrence recorded as a run.
3. memory and idle CPU: the server's RSS (psutil) just after start-up and after
   ``--settle`` + ``--idle-seconds`` seconds idle; its CPU time over the last
   ``--idle-seconds`` seconds, as % of one core (and, apart, that of the PostgreSQL
   backends serving it).
4. burst: ``--burst`` one-off jobs due in the same second, run by ``--workers`` remote
   ``belfry worker --slots`` processes; each command appends its own start time
   (``$EPOCHREALTIME``) to a ledger, as in ``bench/fire_latency.py``: the time from the due
   second until the last one started, p50/p99 of schedule-to-start, missed, doubled and the
   runs recorded as succeeded.
5. API latency with every job in place: ``GET /api/v1/jobs`` (its first page, of the
   default size), ``GET /api/v1/jobs?group=G`` (the first page of one group) and ``GET
   /api/v1/jobs/G/N``, p50/p99 over ``--requests`` requests (fewer if they take more
   than ``LIST_BUDGET`` seconds in all; at least one).

Prints a markdown table: each figure next to its target, met or missed by how much. Exits 1
if a target was missed, 2 if the benchmark itself failed.

Usage: python bench/scale.py [--jobs 100000] [--burst 1000] [--idle-seconds 60]
                             [--db postgresql|sqlite]
Smoke run: python bench/scale.py --jobs 2000 --burst 100 --idle-seconds 5
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import psutil
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fire_latency import (  # noqa: E402 - the latency bench's database and run helpers
    PG_ADMIN,
    _database,
    _drop,
    _percentile,
    _recorded,
)
from tests.e2e.conftest import Belfry, start_server  # noqa: E402 - the tests' server starter
from tests.e2e.fleet import Fleet  # noqa: E402 - and their `belfry worker` starter

MIB = 1024 * 1024
CANARY = "bench-canary/canary"
BURST_GROUP = "bench-burst"
# The burst's due second is this far after its apply begins (runs are made 1.5 s ahead).
BURST_LEAD = 12.0
# Seconds the burst may take before its missing runs count as missed.
BURST_TIMEOUT = 60.0
# A listing of many jobs may take seconds a request: stop after this long (at least one).
LIST_BUDGET = 120.0
# A request that has not answered after this long is given up (and its figure missed).
REQUEST_TIMEOUT = 600.0

# Targets of issue 10 (upper bounds).
TARGET_APPLY_10K_S = 10.0
TARGET_RSS_MIB = 200.0
TARGET_IDLE_CPU_PCT = 2.0
TARGET_BURST_LAST_S = 1.5
TARGET_API_P99_MS = 100.0


class BenchError(Exception):
    """The benchmark could not measure (not a missed target)."""


class Stopped(BenchError):
    """SIGTERM or SIGINT: measuring stops; the processes are stopped, the database dropped
    and what was measured is printed."""


def _stop_on(signum: int, frame: FrameType | None) -> None:
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


def _database_cpu(dbname: str | None) -> float | None:
    """CPU seconds so far of the local PostgreSQL cluster serving ``dbname``: its postmaster,
    the backends it has reaped and the live ones (backends come and go with the server's
    connections). None on SQLite or when the cluster is not on this machine."""
    if dbname is None:
        return None
    with psycopg.connect(PG_ADMIN) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    try:
        backend = psutil.Process(row[0] if row else -1)
        if "postgres" not in backend.name():
            return None  # not a process of this machine
        postmaster = backend.parent()
        if postmaster is None:
            return None
        own = postmaster.cpu_times()
        seconds = own.user + own.system + own.children_user + own.children_system
        for child in postmaster.children():
            with contextlib.suppress(psutil.Error):
                times = child.cpu_times()
                seconds += times.user + times.system
    except psutil.Error:
        return None
    return seconds


def _rss_mib(server: Belfry) -> float:
    return psutil.Process(server.process.pid).memory_info().rss / MIB


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _apply(client: httpx.Client, jobs: list[dict[str, Any]]) -> float:
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


def _wait(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")


# --- 1. load ---------------------------------------------------------------------------------


def load(bench: Bench) -> None:
    args = bench.args
    server = bench.start()
    # A day ahead, on the hour: every job's first occurrence is in that hour, spread over it.
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    jobs = [
        {
            "name": f"job-{n:06d}",
            "group": f"scale-{n // args.group_size:03d}",
            "schedule": f"{n % 60} * * * *",
            "start": _iso(start),
            "command": ["bash", "-c", f"echo scale job {n}"],
            "description": f"scale benchmark job {n}",
        }
        for n in range(args.jobs)
    ]
    times = []
    began = time.perf_counter()
    with bench.client() as client:
        for first in range(0, len(jobs), args.batch):
            times.append(_apply(client, jobs[first : first + args.batch]))
            print(
                f"  applied {min(first + args.batch, args.jobs):,} jobs ({times[-1]:.1f} s)",
                file=sys.stderr,
            )
    total = time.perf_counter() - began
    size = min(args.batch, args.jobs)
    label = f"apply of {size:,} jobs (one request)"
    bench.add(
        Figure(
            f"{label}, first batch",
            times[0],
            "s",
            TARGET_APPLY_10K_S if size == 10_000 else None,
            "empty database",
        ),
        Figure(
            f"{label}, slowest batch",
            max(times),
            "s",
            TARGET_APPLY_10K_S if size == 10_000 else None,
            f"median {_percentile(times, 0.5):.2f} s over {len(times)} batches",
        ),
        Figure(
            f"load of {args.jobs:,} jobs",
            total,
            "s",
            note=f"{args.jobs / total:,.0f} jobs/s",
        ),
        Figure("RSS of the server after the load", _rss_mib(server), "MiB"),
    )


# --- 2. start-up and 3. memory, idle CPU -----------------------------------------------------


def restart(bench: Bench) -> None:
    """Stop the loading server and time a start on the loaded database."""
    # The canary's one-off instant comes after the old server is gone (and more than its
    # 1.5 s planning horizon after), so only the new server's first pass can record it.
    instant = datetime.fromtimestamp(math.ceil(time.time()) + 10, UTC)
    group, name = CANARY.split("/")
    canary = {
        "name": name,
        "group": group,
        "schedule": f"at {_iso(instant)}",
        "pool": "bench-canary",  # no worker serves it: the run is recorded, never run
        "starting_deadline": "1s",
        "command": "true",
    }
    with bench.client() as client:
        _apply(client, [canary])
    stopped_in = bench.stop()
    if time.time() > instant.timestamp() - 2.0:
        raise BenchError(
            f"the server took {stopped_in:.1f} s to stop: it may have planned the canary"
        )
    time.sleep(max(0.0, instant.timestamp() + 1.5 - time.time()))

    began = time.perf_counter()
    server = bench.start()  # returns once /healthz answers 200 (polled every 0.1 s)
    healthz = time.perf_counter() - began
    _wait(
        lambda: httpx.get(server.url + "/readyz", timeout=5).status_code == 200,
        120,
        "/readyz",
    )
    readyz = time.perf_counter() - began
    _wait(
        lambda: server.api("GET", "/api/v1/runs", params={"job": CANARY, "limit": 1}),
        300,
        "the scheduler's first pass (the canary's run)",
    )
    planned = time.perf_counter() - began
    rss = _rss_mib(server)
    # What of it is Python importing the server's modules: the same imports, alone.
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import belfry.server.main"], check=True)
    imports = time.perf_counter() - began
    jobs = bench.args.jobs
    bench.add(
        Figure(f"start-up with {jobs:,} jobs: until /healthz 200", healthz, "s"),
        Figure(f"start-up with {jobs:,} jobs: until /readyz 200", readyz, "s"),
        Figure(
            f"start-up with {jobs:,} jobs: until the scheduler's first pass",
            planned,
            "s",
            note="an overdue canary occurrence recorded",
        ),
        Figure(
            "start-up: of which Python imports",
            imports,
            "s",
            note="`python -c 'import belfry.server.main'`, timed alone",
        ),
        Figure("RSS just after start-up", rss, "MiB", TARGET_RSS_MIB),
    )


def idle(bench: Bench) -> None:
    """Nothing is due: RSS after a few minutes, CPU over the last ``--idle-seconds``."""
    args = bench.args
    process = psutil.Process(bench.live.process.pid)
    time.sleep(args.settle)
    before = process.cpu_times()
    database_before = _database_cpu(bench.dbname)
    began = time.perf_counter()
    time.sleep(args.idle_seconds)
    after = process.cpu_times()
    database_after = _database_cpu(bench.dbname)
    wall = time.perf_counter() - began
    busy = (after.user - before.user) + (after.system - before.system)
    database = None
    if database_before is not None and database_after is not None:
        database = 100 * (database_after - database_before) / wall
    minutes = (args.settle + args.idle_seconds) / 60
    bench.add(
        Figure(
            f"idle CPU over {args.idle_seconds:.0f} s (nothing due)",
            100 * busy / wall,
            "%",
            TARGET_IDLE_CPU_PCT,
            "% of one core, the server process",
        ),
        *(
            [
                Figure(
                    "idle CPU of PostgreSQL, same window",
                    database,
                    "%",
                    note="% of one core, all the cluster's processes",
                )
            ]
            if database is not None
            else []
        ),
        Figure(
            f"RSS after {minutes:.1f} min idle",
            process.memory_info().rss / MIB,
            "MiB",
            TARGET_RSS_MIB,
        ),
    )


# --- 4. burst --------------------------------------------------------------------------------


def burst(bench: Bench) -> None:
    args = bench.args
    server = bench.live
    ledger = bench.workdir / "burst-ledger.txt"
    ledger.write_text("")
    fleet = Fleet(server, bench.db_url, bench.workdir)
    try:
        for number in range(args.workers):
            fleet.start(f"scale-{number}", "default", extra=("--slots", str(args.slots)))
        began = time.time()
        instant = math.ceil(began + BURST_LEAD)
        jobs = [
            {
                "name": f"burst-{n:04d}",
                "group": BURST_GROUP,
                "schedule": f"at {_iso(datetime.fromtimestamp(instant, UTC))}",
                "command": [
                    "bash",
                    "-c",
                    f"echo $BELFRY_JOB $BELFRY_SCHEDULED_FOR $EPOCHREALTIME >> {ledger}",
                ],
            }
            for n in range(args.burst)
        ]
        with bench.client() as client:
            applied_in = _apply(client, jobs)
        if time.time() > instant - 2.0:
            raise BenchError(
                f"the apply of the burst's {args.burst} jobs took {applied_in:.1f} s: "
                f"it ended less than 2 s before their due second"
            )
        deadline = instant + BURST_TIMEOUT
        while time.time() < deadline and len(ledger.read_text().splitlines()) < args.burst:
            time.sleep(0.2)
        # Workers report in batches: give the store a little time to record every end.
        recorded = 0
        deadline = time.monotonic() + 30
        while recorded < args.burst and time.monotonic() < deadline:
            recorded = _recorded(server, instant, instant + 1)
            time.sleep(0.5)
    finally:
        for worker in fleet.workers:
            worker.stop()
    starts: dict[str, list[float]] = {}
    for line in ledger.read_text().splitlines():
        job, _, started = line.split()
        starts.setdefault(job, []).append(float(started) - instant)
    latencies = sorted(min(values) for values in starts.values())
    missed = args.burst - len(starts)
    doubled = sum(len(values) - 1 for values in starts.values())
    last = latencies[-1] if latencies else None
    bench.add(
        Figure(
            f"burst of {args.burst:,} runs due in one second: due second to the last start",
            last,
            "s",
            TARGET_BURST_LAST_S,
            f"{args.workers} remote workers, --slots {args.slots}; missed {missed}, "
            f"doubled {doubled}, recorded succeeded {recorded}",
            failure=f"{missed} never started" if missed else "",
        ),
        Figure(
            "burst: schedule-to-start p50",
            _percentile(latencies, 0.5) * 1000 if latencies else None,
            "ms",
        ),
        Figure(
            "burst: schedule-to-start p99",
            _percentile(latencies, 0.99) * 1000 if latencies else None,
            "ms",
        ),
        Figure("burst: first start", latencies[0] * 1000 if latencies else None, "ms"),
        Figure(f"apply of the burst's {args.burst:,} jobs", applied_in, "s"),
    )


# --- 5. API latency --------------------------------------------------------------------------


def _timed(
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


def api_latency(bench: Bench) -> None:
    args = bench.args
    rng = random.Random(10)
    groups = math.ceil(args.jobs / args.group_size)
    group = f"scale-{groups // 2:03d}"

    def one_job() -> str:
        n = rng.randrange(args.jobs)
        return f"/api/v1/jobs/scale-{n // args.group_size:03d}/job-{n:06d}"

    everything = args.jobs + args.burst + 1
    in_group = min(args.group_size, args.jobs)
    cases: list[tuple[str, Callable[[], str], float]] = [
        (
            f"GET /api/v1/jobs (first page of {everything:,})",
            lambda: "/api/v1/jobs",
            LIST_BUDGET,
        ),
        (
            f"GET /api/v1/jobs?group=G (first page of {in_group:,})",
            lambda: f"/api/v1/jobs?group={group}",
            LIST_BUDGET,
        ),
        ("GET /api/v1/jobs/G/N (random jobs)", one_job, LIST_BUDGET),
    ]
    with bench.client(timeout=REQUEST_TIMEOUT) as client:
        client.get(one_job()).raise_for_status()  # a warm-up: the connection, the caches
        for label, paths, budget in cases:
            times, size, stopped = _timed(client, paths, args.requests, budget)
            note = f"{len(times)} requests, {size / 1024:,.0f} KiB"
            p50 = _percentile(times, 0.5) if times else None
            p99 = _percentile(times, 0.99) if times else None
            bench.add(
                Figure(f"{label} p50", p50, "ms", note=note),
                Figure(f"{label} p99", p99, "ms", TARGET_API_P99_MS, failure=stopped),
            )


def quiet_check(bench: Bench) -> None:
    """The scale jobs must not have fired (their start is a day ahead)."""
    fired = 0
    before = None
    with bench.client() as client:
        while True:
            params: dict[str, Any] = {"limit": 1000}
            if before is not None:
                params["before"] = before
            page = client.get("/api/v1/runs", params=params).raise_for_status().json()
            if not page:
                break
            fired += sum(1 for run in page if run["job"].startswith("scale-"))
            before = page[-1]["id"]
    bench.add(
        Figure(
            "runs of the scale jobs made during the benchmark",
            fired,
            "",
            0,
            "each starts a day ahead: none may fire",
        )
    )


# --- the report ------------------------------------------------------------------------------


def _machine(kind: str) -> str:
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


def render(bench: Bench, machine: str) -> str:
    header = ["what", "measured", "target", "verdict", "notes"]
    lines = [f"machine: {machine}", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|---|---:|---:|---|---|")
    lines += ["| " + " | ".join(figure.cells()) + " |" for figure in bench.figures]
    missed = [figure.what for figure in bench.figures if figure.missed]
    lines.append("")
    lines.append(f"targets missed: {len(missed)}" + (": " + "; ".join(missed) if missed else ""))
    return "\n".join(lines)


PHASES: list[tuple[str, Callable[[Bench], None]]] = [
    ("load", load),
    # `--runs N` (issue 10, second part) goes here: runs made in the database before the
    # restart, so that start-up, memory and the API are measured with them.
    ("start-up", restart),
    ("idle", idle),
    ("burst", burst),
    ("API latency", api_latency),
    ("quiet check", quiet_check),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--burst", type=int, default=1000, help="runs due in the same second")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="idle CPU window")
    parser.add_argument(
        "--settle",
        type=float,
        default=None,
        help="idle seconds before the CPU window [default: 2 x --idle-seconds]",
    )
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--batch", type=int, default=10_000, help="jobs per apply request")
    parser.add_argument("--group-size", type=int, default=1000, help="jobs per group")
    parser.add_argument("--workers", type=int, default=2, help="remote workers for the burst")
    parser.add_argument("--slots", type=int, default=None, help="[default: --burst]")
    parser.add_argument("--requests", type=int, default=50, help="requests per API figure")
    args = parser.parse_args()
    if args.jobs < 1 or args.burst < 1 or args.batch < 1 or args.group_size < 1:
        parser.error("--jobs, --burst, --batch and --group-size must be positive")
    args.settle = 2 * args.idle_seconds if args.settle is None else args.settle
    args.slots = args.slots or args.burst

    machine = _machine(args.db)
    print(f"machine: {machine}", file=sys.stderr)
    workdir = Path(tempfile.mkdtemp(prefix="belfry-scale-"))
    db_url, dbname = _database(args.db, workdir)
    bench = Bench(args, workdir, db_url, dbname, workdir / "home")
    failed = None
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop_on)
    try:
        for name, phase in PHASES:
            print(f"{name}:", file=sys.stderr)
            try:
                phase(bench)
            except (BenchError, AssertionError, httpx.HTTPError, OSError) as error:
                failed = f"{name}: {type(error).__name__}: {error}"
                break
    finally:
        bench.stop()
        _drop(dbname)
    print()
    print(f"`python bench/scale.py {' '.join(sys.argv[1:])}` ({args.db})")
    print()
    print(render(bench, machine))
    if failed:
        log = bench.home / "server.log"
        tail = log.read_text()[-3000:] if log.exists() else ""
        print(f"\nbenchmark failed in {failed}\nserver log tail:\n{tail}", file=sys.stderr)
        print(f"logs kept in {workdir}", file=sys.stderr)
        sys.exit(2)
    shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(1 if any(figure.missed for figure in bench.figures) else 0)


if __name__ == "__main__":
    main()
