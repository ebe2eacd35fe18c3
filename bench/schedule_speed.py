"""Speed of schedule evaluation (issue 3, item 6): a bench, not a timed test.

Two measurements:

* ``next_after`` latency for typical expressions: each call is timed on its own with
  ``time.perf_counter_ns``, from start instants spread over two years (seeded, so every run
  uses the same ones); we report the median and the 99th percentile.
* start-up: parse and compute the first next instant of 100,000 jobs with a realistic mix of
  expressions and zones (``H`` seeded by each job's ``group/name``), total seconds.

Targets: <= 20 us median per next instant; <= 2 s for 100,000 jobs at start-up.

Usage: python bench/schedule_speed.py [--calls 2000] [--jobs 100000]
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from belfry.core.schedules import Schedule, parse_schedule  # noqa: E402

MEDIAN_TARGET_US = 20.0
STARTUP_TARGET_S = 2.0
SEED = 20270101
ORIGIN = datetime(2026, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=730)

# (label, expression, zone, H seed) for the per-call latency table.
TYPICAL: list[tuple[str, str, str, str]] = [
    ("`*/5 * * * *` UTC", "*/5 * * * *", "UTC", ""),
    ("`30 2 * * *` Europe/Berlin", "30 2 * * *", "Europe/Berlin", ""),
    ("`0 9 * * MON-FRI` America/New_York", "0 9 * * MON-FRI", "America/New_York", ""),
    ("`every 5m`", "every 5m", "UTC", ""),
    ("`H * * * *` seeded, Europe/Berlin", "H * * * *", "Europe/Berlin", "team/report"),
    ("`cron(0 12 ? * MON-FRI *)` UTC", "cron(0 12 ? * MON-FRI *)", "UTC", ""),
]

# A start-up mix: (weight, expression, zones it is used in).
MIX: list[tuple[int, str, tuple[str, ...]]] = [
    (20, "*/5 * * * *", ("UTC", "Europe/Berlin")),
    (15, "H * * * *", ("UTC", "Europe/Berlin", "America/New_York")),
    (10, "every 5m", ("UTC",)),
    (5, "every 1h", ("UTC",)),
    (10, "30 2 * * *", ("Europe/Berlin", "Europe/London", "Australia/Sydney")),
    (10, "0 9 * * MON-FRI", ("America/New_York", "America/Chicago", "Asia/Tokyo")),
    (8, "H H * * *", ("UTC", "Europe/Berlin", "America/Los_Angeles")),
    (5, "H(0-29)/10 * * * *", ("UTC", "Asia/Kolkata")),
    (5, "0 0 1 * *", ("UTC", "Europe/Paris")),
    (4, "cron(0 12 ? * MON-FRI *)", ("UTC", "America/New_York")),
    (3, "rate(15 minutes)", ("UTC",)),
    (3, "0 */2 * * *", ("America/Santiago", "Australia/Lord_Howe")),
    (2, "15 30 2 * * *", ("Europe/Berlin",)),
]


@dataclass(frozen=True)
class Latency:
    label: str
    median_us: float
    p99_us: float


def start_instants(count: int, rng: random.Random) -> list[datetime]:
    seconds = int(SPAN.total_seconds())
    return [ORIGIN + timedelta(seconds=rng.randrange(seconds)) for _ in range(count)]


def percentile(sorted_values: list[int], fraction: float) -> int:
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


def measure(label: str, schedule: Schedule, starts: list[datetime]) -> Latency:
    for start in starts[:100]:  # warm-up: caches, zone files
        schedule.next_after(start)
    durations: list[int] = []
    clock = time.perf_counter_ns
    for start in starts:
        before = clock()
        schedule.next_after(start)
        durations.append(clock() - before)
    durations.sort()
    return Latency(label, statistics.median(durations) / 1000, percentile(durations, 0.99) / 1000)


def startup_jobs(count: int, rng: random.Random) -> list[tuple[str, str, str]]:
    """``count`` jobs as (expression, zone, group/name), drawn from MIX by weight."""
    weights = [weight for weight, _, _ in MIX]
    jobs = []
    for number, (_, expression, zones) in enumerate(rng.choices(MIX, weights, k=count)):
        jobs.append((expression, rng.choice(zones), f"group{number % 97}/job-{number}"))
    return jobs


def startup(jobs: list[tuple[str, str, str]], now: datetime) -> float:
    before = time.perf_counter()
    for expression, zone, name in jobs:
        parse_schedule(expression, zone, seed=name).next_after(now)
    return time.perf_counter() - before


def verdict(met: bool) -> str:
    return "met" if met else "**not met**"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="next_after calls per expression")
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs for the start-up run")
    args = parser.parse_args()

    rng = random.Random(SEED)
    starts = start_instants(args.calls, rng)
    results = [
        measure(label, parse_schedule(expression, zone, seed=seed), starts)
        for label, expression, zone, seed in TYPICAL
    ]
    jobs = startup_jobs(args.jobs, rng)
    startup_seconds = startup(jobs, datetime(2026, 11, 23, 11, 7, 31, tzinfo=UTC))

    print(f"Python {platform.python_version()} on {platform.machine()}, {args.calls} calls each")
    print()
    print("| expression | median (µs) | p99 (µs) | ≤ 20 µs median |")
    print("|---|---:|---:|---|")
    for result in results:
        met = result.median_us <= MEDIAN_TARGET_US
        print(f"| {result.label} | {result.median_us:.1f} | {result.p99_us:.1f} | {verdict(met)} |")
    met = startup_seconds <= STARTUP_TARGET_S * args.jobs / 100_000
    print()
    print("| start-up | jobs | total (s) | ≤ 2 s per 100k |")
    print("|---|---:|---:|---|")
    print(f"| parse + first next_after | {args.jobs:,} | {startup_seconds:.2f} | {verdict(met)} |")


if __name__ == "__main__":
    main()
