"""A rolling upgrade on PostgreSQL from the previous release's code.

The previous release is this repository at the commit before the one that added the
newest migration (its code, taken out with ``git archive``, run through PYTHONPATH on the
same dependencies). A cluster of it (two servers, one worker) starts on an empty database
and migrates it to its own head; jobs fire every second. A worker of this code joins it
first (workers are upgraded "any order, any time") and runs occurrences the previous
release's servers hand out. Then each server in turn gets SIGTERM and is started again
with this code (a deploy): the first one migrates the database while the other, still the
previous release, keeps running on the new schema; the first worker stays the previous
release throughout, so both workers run jobs for servers of both versions. Every
occurrence must fire exactly once, never early, across all of it (``tests.chaos.checker``
judges the ledger), and the runs the new worker took from the old servers are recorded
succeeded, with their output.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

from belfry.adapters.store.factory import MIGRATIONS_DIR, VERSION_TABLE, driver_url
from belfry.services.runs import PREPARE_AHEAD
from tests.chaos.checker import ChaosJob, LedgerLine
from tests.chaos.cluster import PATIENCE, ChaosCluster, expected_output
from tests.private_postgres import PrivatePostgres

pytestmark = pytest.mark.e2e

_REPO = Path(__file__).resolve().parents[2]

# Calm seconds before and after the restarts (at least), so the checker sees firing on both
# sides.
CALM_SECONDS = 4.0
JOBS = (
    ChaosJob("tick-all", misfire="run_all", misfire_max=1000),
    ChaosJob("tick-once", misfire="run_once"),
)
# The previous release's worker (``ChaosCluster`` names it), and one of this code that
# joins before the servers are upgraded.
OLD_WORKER = "chaos-worker-0"
NEW_WORKER = "chaos-worker-new"
# Runs the new worker must have started for the previous release's servers.
NEW_WORKER_RUNS = 2


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _head_and_previous() -> tuple[str, str]:
    scripts = ScriptDirectory.from_config(_config())
    head = scripts.get_current_head()
    assert head is not None
    previous = scripts.get_revision(head).down_revision
    assert isinstance(previous, str), "the newest migration has no single predecessor"
    return head, previous


def _migrate(url: str, up_to: str, down_to: str) -> None:
    """Upgrade ``url`` to ``up_to``, then downgrade it to ``down_to``."""
    engine = create_engine(driver_url(url), poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            config = _config()
            config.attributes["connection"] = connection
            command.upgrade(config, up_to)
            command.downgrade(config, down_to)
    finally:
        engine.dispose()


def _previous_release(into: Path) -> tuple[Path, str]:
    """The previous release's source tree (its ``src``), and its commit: the parent of the
    commit that added the newest migration (this checkout's HEAD while that migration is
    not committed yet)."""
    head, _ = _head_and_previous()
    migration = ScriptDirectory.from_config(_config()).get_revision(head).path
    assert migration is not None
    added = _git("log", "--diff-filter=A", "--format=%H", "--", migration).split()
    commit = _git("rev-parse", f"{added[-1]}^" if added else "HEAD").strip()
    archive = subprocess.run(
        ["git", "-C", str(_REPO), "archive", "--format=tar", commit, "src"],
        capture_output=True,
        check=True,
    )
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "src", commit


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(_REPO), *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, (
        f"git {' '.join(args)} failed: {done.stderr.strip()} (this test needs the "
        "repository's history: a full clone, or `git fetch --unshallow`)"
    )
    return done.stdout


def _revision(url: str) -> str:
    with psycopg.connect(url) as connection:
        row = connection.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.timeout(300)
def test_a_cluster_of_the_previous_release_upgrades_without_missing_an_occurrence(
    private_pg: PrivatePostgres, tmp_path: Path
) -> None:
    head, previous_head = _head_and_previous()
    old_src, commit = _previous_release(tmp_path / "previous")
    cluster = ChaosCluster(
        tmp_path / "cluster",
        private_pg,
        jobs=JOBS,
        server_count=2,
        worker_count=1,
        code_env={"PYTHONPATH": str(old_src)},
    )
    try:
        cluster.start()  # the previous release migrates the empty database to its head
        # Only the previous release's code stops there (this code would go on to head).
        assert _revision(cluster.db_url) == previous_head, f"{commit} is not the release before"
        calm_until = time.time() + CALM_SECONDS
        cluster.code_env = {}  # from now on, workers and servers start with this code
        cluster.add_worker(NEW_WORKER)  # a worker upgraded before any server
        # Which worker claims an occurrence is a race between their long polls: wait.
        cluster.wait_until(
            lambda: len(_lines_of(cluster, NEW_WORKER)) >= NEW_WORKER_RUNS,
            f"{NEW_WORKER} to run {NEW_WORKER_RUNS} occurrences for the previous release",
            PATIENCE,
        )
        time.sleep(max(0.0, calm_until - time.time()))
        restart = cluster.rolling_restart()
        cluster.wait_whole()
        assert _revision(cluster.db_url) == head
        # Ready at head: each server's code knows this revision (the previous one's does
        # not, and answers 503), so every server runs this code now.
        for port in cluster.server_ports:
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
            assert ready.status_code == 200, ready.text
        # Both workers serve the new servers: each runs an occurrence that could not be
        # handed out before the last server of the previous release had stopped.
        upgraded = restart.ended + PREPARE_AHEAD.total_seconds()
        cluster.wait_until(
            lambda: {OLD_WORKER, NEW_WORKER} <= _workers_of(cluster, after=upgraded),
            "both workers to run occurrences handed out by the upgraded servers",
            PATIENCE,
        )
        time.sleep(max(0.0, restart.ended + CALM_SECONDS - time.time()))
        result = cluster.finish()
        records = {run["id"]: run for runs in cluster.records().values() for run in runs}
        # The new worker's runs that the previous release's servers handed out: they
        # started before the first server was stopped.
        served_old = [line for line in _lines_of(cluster, NEW_WORKER) if line.start < restart.at]
        outputs = {line.run_id: cluster.output(line.run_id) for line in served_old}
    finally:
        cluster.close()
    print(f"\nrolling upgrade from {commit[:10]}:\n{result.render()}")
    report = result.report
    assert report.expected > 0 and report.fired > 0
    assert restart.failover is not None and restart.failover.new_leader is not None, (
        "no server took over from the leader when it was restarted"
    )
    assert report.ok, "an occurrence ran twice, early, or neither ran nor has a record"
    # A SIGTERM hands over at once: nothing should even need a documented skip.
    assert report.documented == [], "an occurrence was skipped across a graceful restart"
    # A worker of this code served the previous release's servers: what it ran for them
    # is recorded as a user reads it (GET /api/v1/runs, .../output).
    assert len(served_old) >= NEW_WORKER_RUNS
    for line in served_old:
        run = records[line.run_id]
        assert (run["worker"], run["state"], run["exit_code"]) == (NEW_WORKER, "succeeded", 0), (
            f"run {line.run_id} of {NEW_WORKER}, handed out by the previous release: {run}"
        )
        assert outputs[line.run_id] == expected_output(line.run_id, NEW_WORKER), (
            f"the output of run {line.run_id} of {NEW_WORKER}, handed out by the previous release"
        )


def _lines_of(cluster: ChaosCluster, worker: str) -> list[LedgerLine]:
    """The ledger lines of the runs ``worker`` started."""
    return [line for line in cluster.ledger()[0] if line.worker == worker]


def _workers_of(cluster: ChaosCluster, after: float) -> set[str]:
    """The workers that started an occurrence due after ``after`` (epoch seconds)."""
    return {line.worker for line in cluster.ledger()[0] if line.scheduled_for > after}
