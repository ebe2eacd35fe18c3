"""History at scale (issue 10): 100,000 jobs and 10 million runs with output, on PostgreSQL.

Against a real ``belfry server`` on a fresh PostgreSQL database (created here, dropped at
the end):

1. seed: a first start of the server migrates the schema and is stopped. Then ``--jobs``
   jobs and ``--runs`` finished runs are written by SQL (``INSERT ... SELECT ... FROM
   generate_series``), each run with its four events (scheduled, claimed, running, its
   end) and one or two output chunks of ~100 bytes. Runs are interleaved over the jobs
   and their ids grow with time, as a scheduler makes them; ``--old-fraction`` of them
   ended before the retention age (``--keep-days``), the rest within it. The jobs'
   cursors are far ahead (2099): none fires. VACUUM ANALYZE. Figures: the seeding time and
   each table's size with its indexes.
2. API latency, on a server with retention off (nothing is pruned while measuring):
   p50/p99 over ``--requests`` requests of the job page ``GET /api/v1/jobs/G/N``, a job's
   runs ``GET /api/v1/runs?job=G/N``, the jobs list ``GET /api/v1/jobs?limit=100`` (its
   first page and one in the middle), a run ``GET /api/v1/runs/ID`` and its output, for
   random jobs and runs. An every-second job (``* * * * * *``, run by the embedded worker,
   its command appending ``$BELFRY_SCHEDULED_FOR $EPOCHREALTIME`` to a ledger as in
   ``bench/fire_latency.py``) fires all along; its schedule-to-start latency over
   ``--fire-seconds`` seconds after the requests is the baseline.
3. retention: the server restarted with retention on (``keep_days: --keep-days``,
   ``keep_runs: 1000``, the shipped defaults). Its pruner deletes the old runs while the
   every-second job fires: the number of runs older than the retention age is counted in
   the runs table every ``--poll`` seconds until none is left: how long that took, and the
   schedule-to-start p50/p99/max, missed and doubled occurrences of the every-second job
   due meanwhile, from 2 s after the server took the lead (the pruner starts with the
   scheduler; runs are made 1.5 s ahead), at least ``--min-fire-seconds`` of them; then
   the tables' sizes.
4. quiet check: none of the seeded jobs fired.

Prints a markdown table: each figure next to its target, met or missed by how much. Exits 1
if a target was missed, 2 if the benchmark itself failed.

Usage: python bench/history.py [--jobs 100000] [--runs 10000000] [--requests 200]
Smoke run: python bench/history.py --jobs 2000 --runs 200000 --requests 50
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from fire_latency import _percentile  # the latency bench's percentile
from measuring import (
    FIRE_GRACE,
    FIRE_LEAD,
    LIST_BUDGET,
    MIB,
    REQUEST_TIMEOUT,
    TARGET_API_P99_MS,
    TICKER,
    Bench,
    BenchError,
    Figure,
    apply_ticker,
    fire_figures,
    fires_between,
    run_bench,
    timed_gets,
    wait_for,
)
from psycopg import sql
from tests.e2e.conftest import Belfry, start_server  # the tests' server starter

from belfry.core.jobs import JobSpec  # the spec JSON, exactly as the store writes it

HISTORY_TABLES = ("jobs", "runs", "run_events", "output_chunks")
# The seeded jobs never fire: their cursor and their ``start`` bound are this far ahead.
FAR_AHEAD = datetime(2099, 1, 1, tzinfo=UTC)
# The seeded runs' worker names start so; the runs Belfry makes have other workers or none.
SEEDED_WORKER = "bench-worker-"
# The runs the shipped defaults keep per job (far above the ~100 a seeded job has).
KEEP_RUNS = 1000
# Seconds a server may take to take the lead after its start.
LEAD_TIMEOUT = 120.0
# Targets of issue 10 (bench/measuring.py): the API's p99, and pruning must not hold up
# firing: no occurrence of the every-second job starts a second late, none is missed or
# doubled.


def _job_name(number: int, group_size: int) -> str:
    return f"hist-{number // group_size:03d}/job-{number:06d}"


def _connect(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


# --- 1. seed ---------------------------------------------------------------------------------


def _spec_template() -> str:
    """A seeded job's spec JSON with placeholders for its group and name."""
    template = JobSpec(
        name="zzname",
        group="zzgroup",
        schedule="0 * * * *",
        start=FAR_AHEAD,
        command=["true"],
        description="history benchmark job",
    ).model_dump_json()
    if template.count('"zzname"') != 1 or template.count('"zzgroup"') != 1:
        raise BenchError(f"cannot place a job's name in its spec: {template}")
    return template


def _drop_secondary_indexes(conn: psycopg.Connection[Any], tables: tuple[str, ...]) -> list[str]:
    """Drop the unique constraints and plain indexes of ``tables`` (primary keys stay, for
    the id look-ups of the seeding itself); return the statements that make them again.
    Building an index once over sorted rows is several times faster than keeping it up
    row by row, above all the (job_id, ...) ones that rows reach in no order."""
    restore: list[str] = []
    for table in tables:
        constraints = conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = %s::regclass AND contype = 'u'",
            (table,),
        ).fetchall()
        for name, definition in constraints:
            conn.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                    sql.Identifier(table), sql.Identifier(name)
                )
            )
            restore.append(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
        indexes = conn.execute(
            "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index"
            " WHERE indrelid = %s::regclass AND NOT EXISTS"
            " (SELECT 1 FROM pg_constraint WHERE conindid = indexrelid)",
            (table,),
        ).fetchall()
        for name, definition in indexes:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
            restore.append(definition)
    return restore


SEED_JOBS = """
INSERT INTO jobs ("group", name, spec, paused, next_fire_at, created_at, updated_at)
SELECT named.grp, named.name,
       replace(replace(%(template)s::text, '"zzgroup"', '"' || named.grp || '"'),
               '"zzname"', '"' || named.name || '"'),
       false, %(far)s::timestamptz, now(), now()
FROM (
    SELECT 'hist-' || lpad((i / %(group_size)s::int)::text, 3, '0') AS grp,
           'job-' || lpad(i::text, 6, '0') AS name
    FROM generate_series(0, %(jobs)s::int - 1) AS i
) AS named
ORDER BY named.grp, named.name
"""

# Run number i (0-based, in time order) is job number n = i mod jobs (whose id is first_job +
# n: see _seed_database); the first ``old`` runs are spread over [old_from, old_from +
# old_span), the others over [new_from, new_from + new_span). Rows go in in the order
# generate_series makes them, so ids grow with time.
SEED_RUNS = """
INSERT INTO runs (job_id, job, scheduled_for, attempt, target, trigger, state, reason,
                  not_before, exit_code, worker, host, pid, kill_requested, created_at,
                  claimed_at, started_at, finished_at)
SELECT %(first_job)s::int + s.n,
       'hist-' || lpad((s.n / %(group_size)s::int)::text, 3, '0')
       || '/job-' || lpad(s.n::text, 6, '0'),
       s.at, 1, '', 'schedule', s.state, NULL, s.at,
       CASE s.state WHEN 'succeeded' THEN 0 WHEN 'failed' THEN 1 END,
       %(worker)s::text || mod(s.i, 8), 'bench-host-' || mod(s.i, 8), 1000 + mod(s.i, 30000),
       false, s.at - interval '1.5 seconds', s.at - interval '0.2 seconds',
       s.at + interval '0.02 seconds', s.at + make_interval(secs => 1 + mod(s.i, 10))
FROM (
    SELECT i, mod(i, %(jobs)s::bigint)::int AS n,
           CASE WHEN i < %(old)s::bigint
                THEN %(old_from)s::timestamptz
                     + %(old_span)s::interval * (i::float8 / greatest(%(old)s::bigint, 1))
                ELSE %(new_from)s::timestamptz
                     + %(new_span)s::interval
                       * ((i - %(old)s::bigint)::float8 / greatest(%(new)s::bigint, 1))
           END AS at,
           CASE WHEN mod(i, 500) = 11 THEN 'timed_out'
                WHEN mod(i, 50) = 7 THEN 'failed'
                ELSE 'succeeded' END AS state
    FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS i
) AS s
"""

SEED_EVENTS = """
INSERT INTO run_events (run_id, at, state, actor, host, pid, exit_code, reason)
SELECT r.id, e.at, e.state, e.actor, e.host, e.pid, e.exit_code, NULL
FROM runs AS r
CROSS JOIN LATERAL (VALUES
    (r.created_at, 'scheduled', 'scheduler', NULL::text, NULL::integer, NULL::integer),
    (r.claimed_at, 'claimed', 'worker', NULL, NULL, NULL),
    (r.started_at, 'running', 'worker', r.host, r.pid, NULL),
    (r.finished_at, r.state, 'worker', r.host, r.pid, r.exit_code)
) AS e (at, state, actor, host, pid, exit_code)
WHERE r.id > %(after)s::bigint AND r.id <= %(upto)s::bigint
ORDER BY r.id
"""

# One chunk for runs with an even id, two for the others; ~100 bytes each.
SEED_OUTPUT = """
INSERT INTO output_chunks (run_id, seq, stream, data, at)
SELECT r.id, c.seq, 'stdout',
       'run ' || r.id || ' chunk ' || c.seq || ': processed ' || mod(r.id, 997)
       || ' items ' || repeat('.', 60) || E'\\n',
       r.finished_at
FROM runs AS r
CROSS JOIN LATERAL generate_series(0, mod(r.id, 2)::int) AS c (seq)
WHERE r.id > %(after)s::bigint AND r.id <= %(upto)s::bigint
ORDER BY r.id, c.seq
"""


def _seed_database(bench: Bench) -> dict[str, float]:
    """Write the jobs, runs, events and output; the seconds each step took."""
    args = bench.args
    now = datetime.now(UTC)
    keep = timedelta(days=args.keep_days)
    old = round(args.runs * args.old_fraction)
    bounds: dict[str, Any] = {
        "old": old,
        "new": args.runs - old,
        # Old runs end between 2 x keep_days and keep_days + 1 day ago; the others within
        # keep_days - 1 day: a day's margin either side of the pruner's cutoff.
        "old_from": now - 2 * keep,
        "old_span": keep - timedelta(days=1),
        "new_from": now - keep + timedelta(days=1),
        "new_span": keep - timedelta(days=1, hours=1),
        "jobs": args.jobs,
        "worker": SEEDED_WORKER,
    }
    steps: dict[str, float] = {}
    with _connect(bench.db_url) as conn:
        # The rows are consistent by construction: skip the foreign key triggers (a
        # superuser's right; without it they are checked row by row, slower).
        try:
            conn.execute("SET session_replication_role = replica")
        except psycopg.errors.InsufficientPrivilege:
            print("  not a superuser: foreign keys checked while seeding", file=sys.stderr)
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '1GB'")
        restore = _drop_secondary_indexes(conn, ("runs", "run_events"))

        began = time.perf_counter()
        conn.execute(
            SEED_JOBS,
            {
                "template": _spec_template(),
                "far": FAR_AHEAD,
                "group_size": args.group_size,
                "jobs": args.jobs,
            },
        )
        steps["jobs"] = time.perf_counter() - began
        # One INSERT on an empty table: the ids are consecutive, in name order.
        row = conn.execute("SELECT min(id), max(id), count(*) FROM jobs").fetchone()
        if row is None or row[1] - row[0] + 1 != args.jobs or row[2] != args.jobs:
            raise BenchError(f"the seeded jobs' ids are not consecutive: {row}")
        bounds["first_job"] = row[0]
        bounds["group_size"] = args.group_size
        steps["runs"] = steps["events"] = steps["output"] = 0.0
        for lo in range(0, args.runs, args.chunk):
            hi = min(lo + args.chunk, args.runs)
            row = conn.execute("SELECT coalesce(max(id), 0) FROM runs").fetchone()
            after = row[0] if row else 0
            chunk_began = began = time.perf_counter()
            done = conn.execute(SEED_RUNS, bounds | {"lo": lo, "hi": hi})
            if done.rowcount != hi - lo:
                raise BenchError(f"inserted {done.rowcount} runs of {hi - lo}")
            row = conn.execute("SELECT max(id) FROM runs").fetchone()
            span = {"after": after, "upto": row[0] if row else 0}
            steps["runs"] += time.perf_counter() - began
            began = time.perf_counter()
            conn.execute(SEED_EVENTS, span)
            steps["events"] += time.perf_counter() - began
            began = time.perf_counter()
            conn.execute(SEED_OUTPUT, span)
            steps["output"] += time.perf_counter() - began
            took = time.perf_counter() - chunk_began
            print(f"  seeded {hi:,} runs with events and output ({took:.1f} s)", file=sys.stderr)

        began = time.perf_counter()
        for statement in restore:
            conn.execute(statement)
        steps["indexes"] = time.perf_counter() - began
        began = time.perf_counter()
        conn.execute("VACUUM (ANALYZE)")  # the visibility map, for index-only scans
        steps["vacuum analyze"] = time.perf_counter() - began
    return steps


@dataclass
class Sizes:
    total_mib: dict[str, float]  # table + TOAST + indexes
    index_mib: dict[str, float]
    rows: dict[str, int]  # counted (a few seconds at 40M rows; estimates lag a delete)
    database_mib: float


def _sizes(db_url: str) -> Sizes:
    sizes = Sizes({}, {}, {}, 0.0)
    with _connect(db_url) as conn:
        for table in HISTORY_TABLES:
            row = conn.execute(
                sql.SQL(
                    "SELECT pg_total_relation_size(%s::regclass), pg_indexes_size(%s::regclass),"
                    " (SELECT count(*) FROM {})"
                ).format(sql.Identifier(table)),
                (table, table),
            ).fetchone()
            total, indexes, count = row if row else (0, 0, 0)
            sizes.total_mib[table] = total / MIB
            sizes.index_mib[table] = indexes / MIB
            sizes.rows[table] = count
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        sizes.database_mib = (row[0] if row else 0) / MIB
    return sizes


def _size_figures(sizes: Sizes, when: str, note: str = "") -> list[Figure]:
    figures = [
        Figure(
            f"{table} {when}: table + indexes",
            sizes.total_mib[table],
            "MiB",
            note=f"{sizes.rows[table]:,} rows; indexes {sizes.index_mib[table]:,.0f} MiB",
        )
        for table in HISTORY_TABLES
    ]
    figures.append(Figure(f"database {when}", sizes.database_mib, "MiB", note=note))
    return figures


def seed(bench: Bench) -> None:
    args = bench.args
    # A first start migrates the schema (and makes the admin token); then the tables are
    # written directly, with no server running.
    _start(bench, {"retention": {"keep_runs": None, "keep_days": None}}, "--no-worker")
    bench.stop()
    began = time.perf_counter()
    steps = _seed_database(bench)
    took = time.perf_counter() - began
    sizes = _sizes(bench.db_url)
    if sizes.rows["runs"] != args.runs:
        raise BenchError(f"seeded {sizes.rows['runs']:,} runs, not {args.runs:,}")
    bench.add(
        Figure(
            f"seeding {args.jobs:,} jobs and {args.runs:,} runs (SQL)",
            took,
            "s",
            note=", ".join(f"{step} {seconds:.1f} s" for step, seconds in steps.items()),
        ),
        *_size_figures(sizes, "after seeding"),
    )


# --- servers and the every-second job ---------------------------------------------------------


def _start(bench: Bench, config: dict[str, Any], *extra: str) -> Belfry:
    """``belfry server`` on the bench's database with these settings (YAML is JSON's
    superset: the file is written as JSON)."""
    path = bench.workdir / f"server-{time.monotonic_ns()}.yaml"
    path.write_text(json.dumps(config))
    bench.server = start_server(bench.home, bench.db_url, "--config", str(path), *extra)
    return bench.server


# --- 2. API latency --------------------------------------------------------------------------


def api_latency(bench: Bench) -> None:
    args = bench.args
    # Retention off: the pruner deletes nothing while the requests are timed.
    _start(bench, {"retention": {"keep_runs": None, "keep_days": None}})
    with _connect(bench.db_url) as conn:  # before the every-second job makes runs
        row = conn.execute("SELECT min(id), max(id) FROM runs").fetchone()
    if row is None or row[0] is None:
        raise BenchError("no seeded runs")
    first_run, last_run = row
    apply_ticker(bench)
    rng = random.Random(10)

    def one_job() -> str:
        return _job_name(rng.randrange(args.jobs), args.group_size)

    def one_run() -> int:
        return rng.randint(first_run, last_run)

    middle = (args.jobs // 2) // 100 * 100
    cases: list[tuple[str, Callable[[], str]]] = [
        ("GET /api/v1/jobs/G/N (job page, random jobs)", lambda: f"/api/v1/jobs/{one_job()}"),
        ("GET /api/v1/runs?job=G/N (a job's runs)", lambda: f"/api/v1/runs?job={one_job()}"),
        ("GET /api/v1/jobs?limit=100 (first page)", lambda: "/api/v1/jobs?limit=100"),
        (
            f"GET /api/v1/jobs?limit=100&offset={middle:,} (a middle page)",
            lambda: f"/api/v1/jobs?limit=100&offset={middle}",
        ),
        ("GET /api/v1/runs/ID (random runs)", lambda: f"/api/v1/runs/{one_run()}"),
        ("GET /api/v1/runs/ID/output (random runs)", lambda: f"/api/v1/runs/{one_run()}/output"),
    ]
    with bench.client(timeout=REQUEST_TIMEOUT) as client:
        for label, paths in cases:
            client.get(paths()).raise_for_status()  # a warm-up: the connection, the caches
            times, size, stopped = timed_gets(client, paths, args.requests, LIST_BUDGET)
            note = f"{len(times)} requests, last {size / 1024:,.1f} KiB"
            bench.add(
                Figure(
                    f"{label} p50",
                    _percentile(times, 0.5) if times else None,
                    "ms",
                    note=note,
                ),
                Figure(
                    f"{label} p99",
                    _percentile(times, 0.99) if times else None,
                    "ms",
                    TARGET_API_P99_MS,
                    failure=stopped,
                ),
            )
    start = math.ceil(time.time())
    end = start + args.fire_seconds
    time.sleep(max(0.0, end + FIRE_GRACE - time.time()))
    bench.add(*fire_figures(fires_between(bench, start, end), "without pruning"))
    bench.stop()


# --- 3. retention ----------------------------------------------------------------------------


def _old_runs(conn: psycopg.Connection[Any], keep_days: float) -> int:
    """Finished runs past the retention age (the finished_at index answers)."""
    row = conn.execute(
        "SELECT count(*) FROM runs WHERE finished_at < now() - %s * interval '1 day'",
        (keep_days,),
    ).fetchone()
    return int(row[0]) if row else 0


def _leader_epoch(conn: psycopg.Connection[Any]) -> int:
    """The scheduler's fencing epoch: it grows each time a server takes the lead."""
    row = conn.execute("SELECT epoch FROM leadership WHERE name = 'scheduler'").fetchone()
    return int(row[0]) if row else 0


def retention(bench: Bench) -> None:
    args = bench.args
    with _connect(bench.db_url) as conn:
        old_before = _old_runs(conn, args.keep_days)
        epoch = _leader_epoch(conn)
        began = time.time()
        _start(bench, {"retention": {"keep_runs": KEEP_RUNS, "keep_days": args.keep_days}})
        # The pruner starts with the scheduler, when the server takes the lead.
        wait_for(lambda: _leader_epoch(conn) > epoch, LEAD_TIMEOUT, "the server to take the lead")
        leading_at = time.time()
        # (seconds since the start, old runs left), every --poll seconds
        samples = [(0.0, old_before)]
        deadline = began + args.prune_timeout
        while samples[-1][1] > 0 and time.time() < deadline:
            time.sleep(args.poll)
            samples.append((time.time() - began, _old_runs(conn, args.keep_days)))
            print(f"  {samples[-1][0]:6.0f} s: {samples[-1][1]:,} old runs", file=sys.stderr)
        pruned_at = time.time()
    left = samples[-1][1]
    first_deletion = next((at for at, count in samples if count < old_before), None)
    seen = "none seen" if first_deletion is None else f"seen after {first_deletion:.0f} s"
    took = pruned_at - began
    # The every-second job's occurrences due while the pruner worked (at least
    # --min-fire-seconds of them).
    start = math.ceil(leading_at + FIRE_LEAD)
    end = max(math.ceil(pruned_at), start + args.min_fire_seconds)
    time.sleep(max(0.0, end + FIRE_GRACE - time.time()))
    fires = fires_between(bench, start, end)
    during = max(0, min(end, math.ceil(pruned_at)) - start)
    window = (
        f"from {FIRE_LEAD:g} s after the server took the lead ({leading_at - began:.1f} s after "
        f"its start); {during} of them while old runs were left"
    )
    bench.add(
        Figure(
            f"pruning {old_before:,} runs older than {args.keep_days:g} days",
            took if left == 0 else None,
            "s",
            note=f"from the server's start until none is left; first deletion {seen}; "
            f"{(old_before - left) / took:,.0f} runs/s",
            failure=f"{left:,} left after {args.prune_timeout:.0f} s" if left else "",
        ),
        *fire_figures(fires, "while pruning", window),
    )
    bench.stop()
    # Deleted rows leave free space that new rows reuse (after autovacuum): the files do
    # not shrink without VACUUM FULL, which locks the tables.
    bench.add(
        *_size_figures(_sizes(bench.db_url), "after pruning", "space is reused, not returned")
    )


# --- 4. quiet check --------------------------------------------------------------------------


def quiet_check(bench: Bench) -> None:
    """None of the seeded jobs fired (their cursors are in 2099)."""
    with _connect(bench.db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM runs WHERE job <> %s AND (worker IS NULL OR worker NOT LIKE %s)",
            (TICKER, SEEDED_WORKER + "%"),
        ).fetchone()
    bench.add(
        Figure(
            "runs of the seeded jobs made during the benchmark",
            row[0] if row else None,
            "",
            0,
            "their cursors are in 2099: none may fire",
        )
    )


PHASES: list[tuple[str, Callable[[Bench], None]]] = [
    ("seed", seed),
    ("API latency", api_latency),
    ("retention", retention),
    ("quiet check", quiet_check),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=10_000_000)
    parser.add_argument("--requests", type=int, default=200, help="requests per API figure")
    parser.add_argument("--group-size", type=int, default=1000, help="jobs per group")
    parser.add_argument("--chunk", type=int, default=1_000_000, help="runs per INSERT")
    parser.add_argument("--keep-days", type=float, default=30.0, help="retention age")
    parser.add_argument(
        "--old-fraction", type=float, default=0.1, help="runs older than --keep-days"
    )
    parser.add_argument(
        "--fire-seconds", type=int, default=30, help="the every-second job's baseline window"
    )
    parser.add_argument(
        "--min-fire-seconds", type=int, default=20, help="least window while pruning"
    )
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between counts")
    parser.add_argument("--prune-timeout", type=float, default=3600.0)
    args = parser.parse_args()
    if args.jobs < 1 or args.runs < 1 or args.requests < 1 or args.chunk < 1:
        parser.error("--jobs, --runs, --requests and --chunk must be positive")
    if args.jobs > 1_000_000 or args.jobs // args.group_size > 999:
        parser.error("job names have 6 digits and group names 3: at most 999 groups")
    if not 0 <= args.old_fraction <= 1 or args.keep_days < 2:
        parser.error("--old-fraction is between 0 and 1; --keep-days at least 2")

    run_bench("history", args, "postgresql", PHASES)


if __name__ == "__main__":
    main()
