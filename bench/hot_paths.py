"""Where a Belfry process spends its CPU: py-spy samples summed by hot path (issue 10).

``record`` attaches ``py-spy record --format raw`` to a running process (the server or a
worker of a benchmark) for a window; ``summarize`` reads the collapsed stacks it wrote and
says, as a share of the samples taken while a thread was busy, how much went through each
of the paths the README's performance notes follow (inclusive: a claim's database time
counts for the claim and for the driver), and which functions burn the most themselves.

Usage: python bench/hot_paths.py RAW_FILE [RAW_FILE...]   (summarize recorded samples)
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

PY_SPY = str(Path(sys.executable).with_name("py-spy"))
RATE = 100  # samples per second

# What each hot path's stacks go through: (label, fragments of its frames; a stack counts
# for the path when any of its frames holds any of them).
PATHS: list[tuple[str, tuple[str, ...]]] = [
    ("fire: scheduler passes", ("run_once (belfry/services/scheduler.py",)),
    ("claim: handing runs to workers", ("claim (belfry/services/runs.py",)),
    ("started reports", ("_write_started (belfry/services/runs.py",)),
    ("finish reports", ("_write_finished (belfry/services/runs.py",)),
    # Server side: storing the chunks (group commit). Decoding the reports' JSON happens in
    # FastAPI before any frame of ours: it counts for uvicorn / starlette / fastapi only.
    ("output appends: storing chunks (server)", ("_write_output (belfry/services/runs.py",)),
    # Worker side: the pipes read and decoded, masked, scanned, capped, batched and queued
    # as reports (sending them shares requests with the other reports).
    (
        "output: pipes to queued reports (worker)",
        (
            "_read_ready (asyncio/unix_events.py",  # os.read of the run's pipes
            "pipe_data_received (belfry/worker/executor.py",
            "_close_stream (belfry/worker/executor.py",
            "belfry/worker/run_output.py",
            "HttpLink.output (belfry/worker/http_link.py",
        ),
    ),
    ("worker HTTP API (all of it)", ("belfry/server/worker_api.py",)),
    ("alerts and chain passes", ("belfry/services/ended_runs.py",)),
    ("leader election, heartbeats", ("belfry/services/leadership.py",)),
    ("SQLAlchemy (all statements)", ("sqlalchemy/",)),
    ("psycopg (driver)", ("psycopg/",)),
    ("pydantic (validation, JSON)", ("pydantic/",)),
    ("uvicorn / starlette / fastapi", ("starlette/",)),
]


@dataclass
class Summary:
    samples: int
    seconds: float
    paths: list[tuple[str, float]]
    hottest: list[tuple[str, float]]

    @property
    def busy(self) -> float:
        """Busy samples as a share of one core over the window."""
        return self.samples / (RATE * self.seconds) if self.seconds else 0.0

    def render(self, title: str) -> str:
        lines = [
            f"{title}: {self.samples} busy samples in {self.seconds:.0f} s "
            f"(~{100 * self.busy:.0f} % of a core)",
            "",
            "| path (inclusive) | share of busy samples |",
            "|---|---:|",
        ]
        lines += [f"| {label} | {100 * share:.1f} % |" for label, share in self.paths]
        lines += ["", "| function (self) | share |", "|---|---:|"]
        lines += [f"| `{name}` | {100 * share:.1f} % |" for name, share in self.hottest]
        return "\n".join(lines)


def record(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Start sampling ``pid`` for ``seconds`` into ``out`` (collapsed stacks)."""
    return subprocess.Popen(
        [
            PY_SPY,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            str(RATE),
            "--format",
            "raw",
            "--nonblocking",  # never pause the process: its timing is what is measured
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def summarize(raw: Path, seconds: float, top: int = 12) -> Summary:
    through: Counter[str] = Counter()
    itself: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        for label, fragments in PATHS:
            if any(fragment in frame for frame in frames for fragment in fragments):
                through[label] += count
        leaf = frames[-1]
        name, _, where = leaf.partition(" (")
        itself[f"{name} ({where.rsplit('/', 1)[-1]}"] += count
    share = (lambda n: n / total) if total else (lambda n: 0.0)
    return Summary(
        total,
        seconds,
        [(label, share(through[label])) for label, _ in PATHS],
        [(name, share(n)) for name, n in itself.most_common(top)],
    )


def main() -> None:
    for name in sys.argv[1:]:
        path = Path(name)
        print(summarize(path, seconds=0.0).render(path.name))
        print()


if __name__ == "__main__":
    main()
