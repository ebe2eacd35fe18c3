"""Batching, before and after: fire, claim and report writes against a real PostgreSQL.

In process, on a fresh database (dropped at the end), the services as the server builds
them do the same work unbatched, then batched as shipped (reports group-committed with no
linger: what arrives while a batch is being written makes the next batch), then with the
20 ms linger reports waited for company before 2026-11-30:

- fire: N jobs due in the same second; a scheduler pass until all their runs exist.
  Unbatched: ``Scheduler(batch=1)``, one read and one ``advance_jobs`` transaction per job.
- claim: those N runs due; one worker claims until it holds them all (``WorkerService``).
  Unbatched: ``RunService(claim_batch=1)``, one run per claim call.
- reports: the runs report started, output and finished through ``RunService``, from many
  callers at once, each waiting for its report to be stored before the next (as a run's
  output pump does). Unbatched: every report is its own transaction (``OneTransactionEach``
  below stands in for ``GroupCommit``).

What batching may cost is latency when there is little to batch: one job due (fire,
claim) and one output report at a light load (submit to committed).

Due times come from a fake clock (tests/services/fake_clock.py), so nothing waits for a
whole second to come; every duration is wall-clock time, and the report linger is real.
The figures count the SQL statements and commits each measurement made.

Usage: python bench/batching.py [--jobs 1000] [--runs 100] [--chunks 100]
                                [--light-fires 40] [--light-reports 300] [--light-runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import itertools
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fire_latency import _database, _drop, _percentile  # noqa: E402 - database helpers
from measuring import BenchError, machine, stop_on  # noqa: E402 - the benches' report parts
from tests.services.fake_clock import FakeClock  # noqa: E402 - sets the due times

from belfry import __version__  # noqa: E402
from belfry.adapters.store import SqlStore, open_store  # noqa: E402
from belfry.core.execution import Outcome  # noqa: E402
from belfry.core.jobs import JobSpec  # noqa: E402
from belfry.core.protocol import PROTOCOL_VERSION, Hello  # noqa: E402
from belfry.core.records import JobWrite, OutputChunk  # noqa: E402
from belfry.core.states import RunState  # noqa: E402
from belfry.services.batching import GroupCommit  # noqa: E402
from belfry.services.runs import FreeCapacity, RunService  # noqa: E402
from belfry.services.scheduler import Scheduler  # noqa: E402
from belfry.services.workers import WorkerService  # noqa: E402

# The bulk jobs fire at second 0 of every minute; each measured round has a minute of its own.
T0 = datetime(2030, 1, 7, 12, 0, tzinfo=UTC)
WORKER = "bench-worker"
UNBATCHED, BATCHED, LINGERING = "unbatched", "batched", "20 ms linger"
# An output line of a typical size (bytes on the wire per chunk, before JSON).
LINE = "x" * 100 + "\n"

MODES = (UNBATCHED, BATCHED, LINGERING)
# Seconds each report batch waited for company before 2026-11-30 (RunService's linger).
OLD_LINGER = 0.02

Item = TypeVar("Item")


class OneTransactionEach(GroupCommit[Item]):
    """GroupCommit's interface without the grouping: every item is written, in its own
    transaction, by the caller that submitted it. What a report costs without batching."""

    async def submit(self, *items: Item) -> None:
        for item in items:
            await self._write([item])


def _default(cls: type, parameter: str) -> Any:
    """The shipped default of a constructor parameter (the notes name what was measured)."""
    return inspect.signature(cls).parameters[parameter].default


@dataclass
class Took:
    seconds: float
    statements: int
    commits: int


@dataclass
class Tally:
    statements: int = 0
    commits: int = 0


@contextmanager
def tallied(store: SqlStore) -> Iterator[Tally]:
    """Count the SQL statements and commits made through ``store`` inside the block."""
    tally = Tally()
    engine = store.engine.sync_engine

    def statement(*_: object) -> None:
        tally.statements += 1

    def commit(*_: object) -> None:
        tally.commits += 1

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    try:
        yield tally
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", commit)


async def timed(store: SqlStore, work: Callable[[], Awaitable[object]]) -> Took:
    with tallied(store) as tally:
        began = time.perf_counter()
        await work()
        seconds = time.perf_counter() - began
    return Took(seconds, tally.statements, tally.commits)


@dataclass
class Mode:
    """The services as one server builds them, batched or not."""

    name: str
    scheduler: Scheduler
    runs: RunService
    workers: WorkerService

    @classmethod
    def build(cls, store: SqlStore, clock: FakeClock, name: str) -> Mode:
        """``name``: "unbatched"; "batched", as shipped; "20 ms linger", batched but with
        each report batch waiting 20 ms for company first (as before 2026-11-30)."""
        if name == UNBATCHED:
            scheduler = Scheduler(store, clock, on_runs_created=lambda: None, batch=1)
            runs = RunService(store, clock, claim_batch=1)
            # The service's own write paths, each report committed on its own.
            runs._started = OneTransactionEach(runs._write_started)
            runs._outputs = OneTransactionEach(runs._write_output)
            runs._finished = OneTransactionEach(runs._write_finished)
        else:
            scheduler = Scheduler(store, clock, on_runs_created=lambda: None)
            runs = RunService(store, clock)
        if name == LINGERING:
            runs._started = GroupCommit(runs._write_started, linger=OLD_LINGER)
            runs._outputs = GroupCommit(runs._write_output, linger=OLD_LINGER)
            runs._finished = GroupCommit(runs._write_finished, linger=OLD_LINGER)
        workers = WorkerService(store, clock, runs, version=__version__)
        return cls(name, scheduler, runs, workers)

    async def claim_all(self, count: int) -> tuple[list[int], int]:
        """Claim until ``count`` runs are held, as a worker polling without waiting would;
        the run ids and the number of claim calls."""
        claimed: list[int] = []
        calls = 0
        while len(claimed) < count:
            assignment = await self.workers.claim(WORKER, FreeCapacity(), wait=0)
            calls += 1
            if not assignment.orders:
                raise BenchError(f"{self.name}: claimed {len(claimed)} of {count} runs")
            claimed += [order.run_id for order in assignment.orders]
        return claimed, calls


async def concurrently(
    run_ids: Sequence[int], callers: int, report: Callable[[int], Awaitable[None]]
) -> None:
    """``callers`` concurrent reporters, each reporting its share of ``run_ids`` one by one."""

    async def caller(share: Sequence[int]) -> None:
        for run_id in share:
            await report(run_id)

    await asyncio.gather(*(caller(run_ids[n::callers]) for n in range(callers)))


@dataclass
class Round:
    """What one mode measured on the bulk work."""

    fire: Took
    claim: Took
    claim_calls: int
    started: Took
    output: Took
    finished: Took
    run_ids: list[int]  # the runs made, claimed and ended


class Bench:
    def __init__(self, store: SqlStore, args: argparse.Namespace) -> None:
        self.store = store
        self.args = args
        self.clock = FakeClock(T0)
        self.modes = {name: Mode.build(store, self.clock, name) for name in MODES}
        # Output sequence numbers, unique across every run (a re-sent (run, seq) is ignored).
        self._seq = itertools.count()

    def chunk(self, run_id: int) -> OutputChunk:
        return OutputChunk(run_id, next(self._seq), "stdout", LINE, self.clock.now())

    async def setup(self) -> None:
        args = self.args
        bulk = [
            JobWrite(_spec(f"bulk-{n:05d}", "* * * * *"), T0)  # every minute, at second 0
            for n in range(args.jobs)
        ]
        # The light job fires at second 30 of the minutes before T0, one mode a minute.
        light_from = T0 - timedelta(minutes=args.light_fires)
        light = JobWrite(_spec("light", "30 * * * * *"), light_from)
        await self.store.apply_jobs([*bulk, light], [], light_from)
        self.clock.current = light_from
        hello = Hello(
            name=WORKER,
            host="bench",
            pools=["default"],
            version=__version__,
            protocol=PROTOCOL_VERSION,
        )
        await self.modes[BATCHED].workers.hello(hello, None)

    async def light_fires(self) -> dict[str, tuple[list[float], list[float]]]:
        """One job due at a time: milliseconds from pass start to its run made, and from
        claim call to its run claimed, by mode (alternating minute by minute)."""
        light_from = self.clock.current
        compared = (self.modes[UNBATCHED], self.modes[BATCHED])
        times: dict[str, tuple[list[float], list[float]]] = {
            mode.name: ([], []) for mode in compared
        }
        for minute in range(self.args.light_fires):
            mode = compared[minute % 2]
            self.clock.current = light_from + timedelta(minutes=minute, seconds=30)
            fire = await timed(self.store, mode.scheduler.run_once)
            claim = await timed(self.store, partial(mode.claim_all, 1))
            times[mode.name][0].append(fire.seconds * 1000)
            times[mode.name][1].append(claim.seconds * 1000)
        # Out of the way of the bulk rounds (its cursor would be due in them).
        light = await self.store.get_job("default", "light")
        if light is not None:
            await self.store.apply_jobs([], [light.id], self.clock.now())
        return times

    async def bulk_round(self, mode: Mode, minute: int) -> Round:
        """N jobs due in one second, through fire, claim, start, output and finish."""
        args = self.args
        self.clock.current = T0 + timedelta(minutes=minute)
        fire = await timed(self.store, mode.scheduler.run_once)
        claimed: list[int] = []
        calls = 0

        async def claim() -> None:
            nonlocal claimed, calls
            claimed, calls = await mode.claim_all(args.jobs)

        claim_took = await timed(self.store, claim)
        started = await timed(
            self.store,
            lambda: concurrently(
                claimed, args.runs, lambda run_id: mode.runs.started(run_id, 4242, "bench")
            ),
        )
        output = await self.output_burst(mode.runs, claimed[: args.runs])
        finished = await timed(
            self.store,
            lambda: concurrently(
                claimed,
                args.runs,
                lambda run_id: mode.runs.finished(run_id, Outcome(RunState.SUCCEEDED, 0)),
            ),
        )
        await self._check_ended(claimed)
        return Round(fire, claim_took, calls, started, output, finished, claimed)

    async def output_burst(self, service: RunService, run_ids: Sequence[int]) -> Took:
        """``--chunks`` output reports from each of ``run_ids`` at once, one chunk a report."""
        per_run = [run_id for run_id in run_ids for _ in range(self.args.chunks)]
        return await timed(
            self.store,
            lambda: concurrently(
                per_run, len(run_ids), lambda run_id: service.output([self.chunk(run_id)])
            ),
        )

    async def light_reports(self, service: RunService, run_ids: Sequence[int]) -> list[float]:
        """Milliseconds from submit to committed of one-chunk output reports from
        ``run_ids`` at once, each pausing a random 0-100 ms (50 ms mean) between reports."""
        latencies: list[float] = []
        wanted = self.args.light_reports

        async def reporter(run_id: int) -> None:
            while len(latencies) < wanted:
                began = time.perf_counter()
                await service.output([self.chunk(run_id)])
                latencies.append((time.perf_counter() - began) * 1000)
                await asyncio.sleep(random.uniform(0, 0.1))

        await asyncio.gather(*(reporter(run_id) for run_id in run_ids))
        return latencies[:wanted]

    async def _check_ended(self, run_ids: Sequence[int]) -> None:
        """Every run made was claimed and recorded succeeded (the work was all done)."""
        ended = await self.store.runs_in_states([RunState.SUCCEEDED])
        done = {run.id for run in ended}
        missing = [run_id for run_id in run_ids if run_id not in done]
        if len(run_ids) != self.args.jobs or missing:
            raise BenchError(f"{len(run_ids)} runs claimed, {len(missing)} of them not ended")


def _spec(name: str, schedule: str) -> JobSpec:
    return JobSpec.model_validate({"name": name, "schedule": schedule, "command": "true"})


# --- the report ------------------------------------------------------------------------------


@dataclass
class Row:
    what: str
    unbatched: float
    batched: float
    unit: str  # s or ms
    notes: str = ""
    shown: tuple[str, str] | None = None  # the cells, when more than one figure is shown

    def cells(self) -> list[str]:
        digits = 2 if self.unit == "s" else 1
        before, after = self.shown or (
            f"{self.unbatched:,.{digits}f} {self.unit}",
            f"{self.batched:,.{digits}f} {self.unit}",
        )
        speed_up = f"{self.unbatched / self.batched:.1f}x" if self.batched else "n/a"
        return [self.what, before, after, speed_up, self.notes]


def _counted(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _work(took: Took) -> str:
    return f"{_counted(took.statements, 'statement')}, {_counted(took.commits, 'commit')}"


def _latency_row(what: str, unbatched: list[float], batched: list[float], notes: str) -> Row:
    """p50 compared; p99 shown beside it."""

    def shown(values: list[float]) -> str:
        return f"{_percentile(values, 0.5):.1f} / {_percentile(values, 0.99):.1f} ms"

    return Row(
        what,
        _percentile(unbatched, 0.5),
        _percentile(batched, 0.5),
        "ms",
        notes,
        (shown(unbatched), shown(batched)),
    )


async def measure(store: SqlStore, args: argparse.Namespace) -> list[Row]:
    bench = Bench(store, args)
    await bench.setup()
    print("light load: one job due at a time", file=sys.stderr)
    light = await bench.light_fires()
    # A batched round, not reported: the first thousand inserts warm PostgreSQL's caches.
    print("warm-up round", file=sys.stderr)
    await bench.bulk_round(bench.modes[BATCHED], 0)
    rounds: dict[str, Round] = {}
    for minute, name in enumerate(MODES, start=1):
        print(f"{name} round", file=sys.stderr)
        rounds[name] = await bench.bulk_round(bench.modes[name], minute)
    before, after, lingering = rounds[UNBATCHED], rounds[BATCHED], rounds[LINGERING]
    print("output: latency at a light load", file=sys.stderr)
    latency = {
        name: await bench.light_reports(
            bench.modes[name].runs, rounds[name].run_ids[: args.light_runs]
        )
        for name in MODES
    }

    batch = _default(Scheduler, "batch")
    claim_batch = _default(RunService, "claim_batch")
    linger = "group commit"
    fires = args.light_fires // 2

    def with_linger(took: Took) -> str:
        return f"with a 20 ms linger {took.seconds:.2f} s, {took.commits:,} commits"

    def commits(unbatched: Took, batched: Took) -> str:
        return f"{unbatched.commits:,} vs {batched.commits:,} commits"

    def one_due(what: str, index: int) -> Row:
        unbatched, batched = light[UNBATCHED][index], light[BATCHED][index]
        return Row(
            f"{what} (p50)",
            _percentile(unbatched, 0.5),
            _percentile(batched, 0.5),
            "ms",
            f"{fires} samples each; max {max(unbatched):.1f} vs {max(batched):.1f} ms",
        )

    return [
        Row(
            f"fire: {args.jobs:,} jobs due in one second -> all runs made",
            before.fire.seconds,
            after.fire.seconds,
            "s",
            f"batch 1 vs {batch}; {_work(before.fire)} vs {_work(after.fire)}",
        ),
        one_due("fire: one job due -> its run made", 0),
        Row(
            f"claim: {args.jobs:,} due runs -> one worker holds them all",
            before.claim.seconds,
            after.claim.seconds,
            "s",
            f"claim_batch 1 vs {claim_batch}: {before.claim_calls:,} vs {after.claim_calls:,} "
            f"calls; {_work(before.claim)} vs {_work(after.claim)}",
        ),
        one_due("claim: one due run -> claimed", 1),
        Row(
            f"started: {args.jobs:,} reports, {args.runs} concurrent callers -> stored",
            before.started.seconds,
            after.started.seconds,
            "s",
            f"a transaction each vs {linger}; {commits(before.started, after.started)}; "
            f"{with_linger(lingering.started)}",
        ),
        Row(
            f"output: {args.runs * args.chunks:,} chunks from {args.runs} concurrent runs "
            "-> stored",
            before.output.seconds,
            after.output.seconds,
            "s",
            f"each run reports one chunk at a time, {args.chunks} in all; "
            f"{commits(before.output, after.output)}; {with_linger(lingering.output)}",
        ),
        _latency_row(
            "output: one report, submit -> committed, at a light load (p50 / p99)",
            latency[UNBATCHED],
            latency[BATCHED],
            f"{args.light_runs} runs, each reporting every 0-100 ms; {args.light_reports} "
            f"reports each; with a 20 ms linger {_percentile(latency[LINGERING], 0.5):.1f} / "
            f"{_percentile(latency[LINGERING], 0.99):.1f} ms",
        ),
        Row(
            f"finished: {args.jobs:,} reports, {args.runs} concurrent callers -> stored",
            before.finished.seconds,
            after.finished.seconds,
            "s",
            f"{commits(before.finished, after.finished)}; {with_linger(lingering.finished)}",
        ),
    ]


def render(rows: list[Row], described: str) -> str:
    lines = [
        f"machine: {described}",
        "",
        "| what | unbatched | batched | speed-up | notes |",
        "|---|---:|---:|---:|---|",
    ]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


async def run(url: str, args: argparse.Namespace) -> list[Row]:
    store = await open_store(url)
    try:
        return await measure(store, args)
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000, help="jobs due in the same second")
    parser.add_argument("--runs", type=int, default=100, help="concurrent reporting runs")
    parser.add_argument("--chunks", type=int, default=100, help="output chunks per run")
    parser.add_argument("--light-fires", type=int, default=40, help="one-job fires (half per mode)")
    parser.add_argument(
        "--light-reports", type=int, default=300, help="light-load reports per mode"
    )
    parser.add_argument("--light-runs", type=int, default=5, help="runs reporting at light load")
    args = parser.parse_args()
    if min(args.jobs, args.runs, args.chunks, args.light_reports, args.light_runs) < 1:
        parser.error("every count must be positive")
    if args.light_fires < 2:
        parser.error("--light-fires must be at least 2")
    if args.runs > args.jobs or args.light_runs > args.runs:
        parser.error("need --light-runs <= --runs <= --jobs")

    described = machine("postgresql")
    print(f"machine: {described}", file=sys.stderr)
    workdir = Path(tempfile.mkdtemp(prefix="belfry-batching-"))
    url, dbname = _database("postgresql", workdir)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop_on)
    try:
        rows = asyncio.run(run(url, args))
    except BenchError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        sys.exit(2)
    finally:
        _drop(dbname)
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(f"`python bench/batching.py {' '.join(sys.argv[1:])}` (postgresql)")
    print()
    print(render(rows, described))


if __name__ == "__main__":
    main()
