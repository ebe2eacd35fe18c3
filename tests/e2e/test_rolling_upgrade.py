"""A rolling upgrade on PostgreSQL, as far as one release can show it.

The database starts one migration behind this code (migrated to the head, then its newest
migration undone: downgrade() must work). Two servers of this code start on it, the first
migrating it, and a worker; jobs fire every second; then each server in turn gets SIGTERM
and is started again (a deploy). Every occurrence must fire exactly once, never early,
across the migration and both restarts (``tests.chaos.checker`` judges the ledger).

Not shown here: the previous release's servers running on the migrated schema next to
this one's. That needs two releases built side by side; the expand-only check over the
migrations (``tests/store/test_migration_policy.py``) stands in for it (docs/operations.md).
"""

from __future__ import annotations

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
from tests.chaos.checker import ChaosJob
from tests.chaos.cluster import ChaosCluster
from tests.private_postgres import PrivatePostgres

pytestmark = pytest.mark.e2e

# Calm seconds before and after the restarts, so the checker sees firing on both sides.
CALM_SECONDS = 4.0
JOBS = (
    ChaosJob("tick-all", misfire="run_all", misfire_max=1000),
    ChaosJob("tick-once", misfire="run_once"),
)


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


def _revision(url: str) -> str:
    with psycopg.connect(url) as connection:
        row = connection.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.timeout(300)
def test_a_rolling_upgrade_from_the_previous_schema_fires_every_occurrence_once(
    private_pg: PrivatePostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    head, previous = _head_and_previous()
    create_database = private_pg.create_database

    def create_previous_schema_database(name: str) -> str:
        # The cluster makes its own database: leave it where the previous release left it.
        url = create_database(name)
        _migrate(url, head, previous)
        assert _revision(url) == previous
        return url

    monkeypatch.setattr(private_pg, "create_database", create_previous_schema_database)
    cluster = ChaosCluster(
        tmp_path / "cluster", private_pg, jobs=JOBS, server_count=2, worker_count=1
    )
    try:
        cluster.start()  # the first server migrates the database, the second finds it done
        assert _revision(cluster.db_url) == head
        for port in cluster.server_ports:
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
            assert ready.status_code == 200, ready.text
        time.sleep(CALM_SECONDS)
        restart = cluster.rolling_restart()
        cluster.wait_whole()
        time.sleep(CALM_SECONDS)
        result = cluster.finish()
    finally:
        cluster.close()
    print(f"\nrolling upgrade:\n{result.render()}")
    report = result.report
    assert report.expected > 0 and report.fired > 0
    assert restart.failover is not None and restart.failover.new_leader is not None, (
        "no server took over from the leader when it was restarted"
    )
    assert report.ok, "an occurrence ran twice, early, or neither ran nor has a record"
    # A SIGTERM hands over at once: nothing should even need a documented skip.
    assert report.documented == [], "an occurrence was skipped across a graceful restart"
