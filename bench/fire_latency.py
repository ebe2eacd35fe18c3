"""Schedule-to-start latency of a single-node Belfry, against the floor set by spawning.

For N jobs that each fire every second, every command appends
``<job> <scheduled_for> <its own start time>`` to a shared file. We measure, over a window
of whole seconds, the delay between each occurrence's nominal instant and the moment its
command actually started, and count missed and duplicated occurrences; every run must also
be recorded as succeeded in the store (read back through the API).

The floor: a bare Python loop that, at each whole second, spawns N
``bash -c 'echo $EPOCHREALTIME >> file'`` and nothing else.

With ``--workers K`` the server runs without its embedded worker and K ``belfry worker``
processes on this machine run the jobs, over HTTP (issue 4); the summary then also names
the highest rate measured with p99 under 1 s and nothing missed.

With ``--profile DIR`` the server (and one worker) are sampled with py-spy over each window
and a summary of where their CPU went is printed (``bench/hot_paths.py``).

With ``--output-lines L`` each command also prints L lines of ~80 characters to stdout, one
``echo`` (one write) each, after its ledger line, so the output path (reading the pipes,
masking, batching, reporting, storing chunks) is exercised; the ledger line and thus the
start times are unchanged.

Usage: python bench/fire_latency.py [--jobs 10,100,500] [--seconds 10] [--db sqlite,postgresql]
                                    [--workers K] [--profile DIR] [--output-lines L]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hot_paths  # noqa: E402 - py-spy sampling for --profile
from tests.e2e.conftest import start_server  # noqa: E402 - reuse the e2e harness

PG_ADMIN = os.environ.get(
    "BELFRY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
WARMUP = 3


@dataclass
class Result:
    label: str
    jobs: int
    expected: int
    started: int
    missed: int
    duplicated: int
    recorded: int | None
    latencies: list[float]

    def row(self) -> list[str]:
        lat = sorted(self.latencies) or [float("nan")]
        p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
        return [
            self.label,
            str(self.jobs),
            str(self.expected),
            str(self.missed),
            str(self.duplicated),
            "-" if self.recorded is None else str(self.recorded),
            f"{p(0.5):.1f}",
            f"{p(0.99):.1f}",
            f"{lat[-1] * 1000:.1f}",
        ]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def floor(jobs: int, seconds: int, workdir: Path) -> Result:
    ledger = workdir / f"floor-{jobs}.txt"
    ledger.write_text("")
    script = f"echo $EPOCHREALTIME >> {ledger}"
    children: list[subprocess.Popen[bytes]] = []
    instants = []
    start = int(time.time()) + 2
    for second in range(start, start + seconds):
        time.sleep(max(0.0, second - time.time()))
        instants.append(second)
        for _ in range(jobs):
            children.append(subprocess.Popen(["bash", "-c", script]))
        children = [c for c in children if c.poll() is None]
    for child in children:
        child.wait()
    stamps = sorted(float(line) for line in ledger.read_text().split())
    # Each start belongs to the latest whole second at or before it.
    latencies = [stamp - max(i for i in instants if i <= stamp) for stamp in stamps]
    return Result(
        "floor (bare spawn loop)",
        jobs,
        jobs * seconds,
        len(stamps),
        max(0, jobs * seconds - len(stamps)),
        0,
        None,
        latencies,
    )


def _database(kind: str, workdir: Path) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite:///{workdir / f'bench-{uuid.uuid4().hex[:8]}.db'}", None
    name = f"belfry_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    return f"{base}/{name}", name


def _drop(name: str | None) -> None:
    if name:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _start_workers(
    url: str, server_url: str, count: int, workdir: Path
) -> list[subprocess.Popen[bytes]]:
    belfry_cli = str(Path(sys.executable).with_name("belfry"))
    made = subprocess.run(
        [
            belfry_cli,
            "token",
            "create",
            "--db",
            url,
            "--role",
            "worker",
            "--pool",
            "default",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    token = json.loads(made.stdout)["token"]
    workers = []
    for number in range(count):
        log = (workdir / f"worker-{number}.log").open("wb")
        workers.append(
            subprocess.Popen(
                [
                    belfry_cli,
                    "worker",
                    "--server",
                    server_url,
                    "--pool",
                    "default",
                    "--name",
                    f"bench-{number}",
                ],
                env={**os.environ, "BELFRY_TOKEN": token},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    return workers


def _stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()


def belfry(
    kind: str,
    jobs: int,
    seconds: int,
    workdir: Path,
    remote: int = 0,
    profile: Path | None = None,
    output_lines: int = 0,
) -> Result:
    url, dbname = _database(kind, workdir)
    home = workdir / f"home-{kind}-{jobs}-{remote}-{output_lines}"
    ledger = workdir / f"ledger-{kind}-{jobs}-{remote}-{output_lines}.txt"
    ledger.write_text("")
    server = start_server(home, url, *(["--no-worker"] if remote else []))
    workers = _start_workers(url, server.url, remote, workdir) if remote else []
    try:
        lines = ["jobs:"]
        for n in range(jobs):
            lines += [
                f"  - name: j{n:04d}",
                '    schedule: "* * * * * *"',
                "    retention: {keep_runs: 100000}",
                "    command: [bash, -c, "
                f"'echo $BELFRY_JOB $BELFRY_SCHEDULED_FOR $EPOCHREALTIME >> {ledger}"
                f"{_printing(output_lines)}']",
            ]
        spec = workdir / f"jobs-{kind}-{jobs}.yaml"
        spec.write_text("\n".join(lines) + "\n")
        applied = server.cli("apply", "-f", str(spec))
        assert applied.returncode == 0, applied.stderr
        window_start = int(time.time()) + WARMUP
        window_end = window_start + seconds  # exclusive
        samplers = []
        if profile is not None:
            # Sampled over the window: the server, and one worker when there are some.
            time.sleep(max(0.0, window_start - time.time()))
            pids = {"server": server.process.pid, **({"worker": workers[0].pid} if workers else {})}
            for role, pid in pids.items():
                out = profile / f"{kind}-{jobs}-{remote}-{output_lines}-{role}.raw"
                samplers.append((role, out, hot_paths.record(pid, seconds, out)))
        time.sleep(max(0.0, window_end + 3 - time.time()))
        for role, out, sampler in samplers:
            sampler.wait(timeout=60)
            title = (
                f"{kind}, {jobs} jobs/s, {remote} remote workers, "
                f"{output_lines} output lines per run: {role}"
            )
            print(hot_paths.summarize(out, seconds).render(title) + "\n", file=sys.stderr)
        recorded = _recorded(server, window_start, window_end)
    finally:
        _stop_workers(workers)
        server.stop()
        _drop(dbname)
    seen: dict[tuple[str, int], list[float]] = {}
    for line in ledger.read_text().splitlines():
        job, scheduled, started = line.split()
        instant = datetime.fromisoformat(scheduled.replace("Z", "+00:00")).timestamp()
        if window_start <= instant < window_end:
            seen.setdefault((job, int(instant)), []).append(float(started) - instant)
    expected = jobs * seconds
    latencies = [values[0] for values in seen.values()]
    duplicated = sum(len(values) - 1 for values in seen.values())
    label = (
        f"belfry {kind}"
        + (f", {remote} remote workers" if remote else "")
        + (f", {output_lines} output lines" if output_lines else "")
    )
    return Result(
        label,
        jobs,
        expected,
        len(seen),
        expected - len(seen),
        duplicated,
        recorded,
        latencies,
    )


def _printing(lines: int) -> str:
    """Shell that prints ``lines`` lines of ~80 characters after the ledger line (bash
    builtins only, so no process is spawned beyond the command's own)."""
    if lines <= 0:
        return ""
    text = f"line $i of {lines} from bench job $BELFRY_JOB: the quick brown fox jumps over the"
    text += " lazy dog"
    return f'; for ((i = 1; i <= {lines}; i++)); do echo "{text}"; done'


def _recorded(server: object, start: int, end: int) -> int:
    """Runs recorded as succeeded (attempt 1) for occurrences inside the window."""
    from tests.e2e.conftest import Belfry

    assert isinstance(server, Belfry)
    count = 0
    before = None
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=60
    ) as client:
        while True:
            params: dict[str, object] = {"limit": 1000, "state": "succeeded"}
            if before is not None:
                params["before"] = before
            page = client.get("/api/v1/runs", params=params).json()
            if not page:
                return count
            for run in page:
                instant = datetime.fromisoformat(run["scheduled_for"].replace("Z", "+00:00"))
                if start <= instant.timestamp() < end and run["attempt"] == 1:
                    count += 1
            before = page[-1]["id"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="10,100,500")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--workers", type=int, default=0, help="remote worker processes")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="sample the server (and a worker) with py-spy over each window; summaries on "
        "stderr, samples kept in DIR",
    )
    parser.add_argument(
        "--output-lines",
        type=int,
        default=0,
        metavar="L",
        help="each command also prints L lines of ~80 characters to stdout (default 0: none)",
    )
    args = parser.parse_args()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    sizes = [int(n) for n in args.jobs.split(",")]
    kinds = args.db.split(",")
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="belfry-bench-") as tmp:
        workdir = Path(tmp)
        for jobs in sizes:
            results.append(floor(jobs, args.seconds, workdir))
            print(f"measured floor N={jobs}", file=sys.stderr)
            for kind in kinds:
                results.append(
                    belfry(
                        kind,
                        jobs,
                        args.seconds,
                        workdir,
                        args.workers,
                        args.profile,
                        args.output_lines,
                    )
                )
                print(f"measured {kind} N={jobs}", file=sys.stderr)
    header = ["what", "N/s", "expected", "missed", "dup", "recorded", "p50 ms", "p99 ms", "max ms"]
    print(
        f"\nmachine: {platform.node()} {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}, window {args.seconds}s per row, "
        f"{datetime.now(UTC):%Y-%m-%d}"
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for result in results:
        print("| " + " | ".join(result.row()) + " |")
    floors = {
        r.jobs: _percentile(r.latencies, 0.99) for r in results if r.label.startswith("floor")
    }
    for result in results:
        if not result.label.startswith("floor") and result.latencies and floors.get(result.jobs):
            ratio = _percentile(result.latencies, 0.99) / floors[result.jobs]
            print(f"{result.label} N={result.jobs}: p99 is {ratio:.2f}x the floor")
    sustained = [
        r.jobs
        for r in results
        if not r.label.startswith("floor")
        and r.missed == 0
        and r.duplicated == 0
        and r.latencies
        and _percentile(r.latencies, 0.99) < 1.0
    ]
    if sustained:
        print(f"highest rate measured with p99 < 1 s and nothing missed: {max(sustained)} fires/s")


if __name__ == "__main__":
    main()
