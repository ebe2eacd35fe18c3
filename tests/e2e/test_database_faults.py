"""The database goes away: PostgreSQL restarted, crashed, or unreachable for a while.

Servers and workers wait and reconnect; firing resumes within seconds of the database
accepting connections; every occurrence of the gap is caught up per the misfire policy
(or recorded as skipped with the reason); nothing a worker reported is lost.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Belfry, start_server
from tests.e2e.fleet import Fleet
from tests.e2e.test_ha import _instant
from tests.private_postgres import PrivatePostgres

pytestmark = pytest.mark.e2e


def _ledger_lines(ledger: Path) -> list[tuple[float, float]]:
    lines = [line.split() for line in ledger.read_text().splitlines()] if ledger.exists() else []
    return [(_instant(scheduled), float(started)) for scheduled, started in lines]


@pytest.mark.parametrize("fault", ["restart", "crash", "freeze"])
def test_firing_resumes_after_the_database_comes_back(
    private_pg: PrivatePostgres, tmp_path: Path, fault: str
) -> None:
    url = private_pg.create_database("belfry")
    ledger = tmp_path / "ledger"
    server = start_server(tmp_path / "home", url)
    try:
        server.apply(
            tmp_path,
            f"""
            jobs:
              - name: tick
                schedule: "* * * * * *"
                misfire: run_all
                command: echo "$BELFRY_SCHEDULED_FOR $(date +%s.%N)" >> {ledger}
            """,
        )
        server.wait_for(lambda: len(_ledger_lines(ledger)) >= 2, what="firing")
        down_at = time.time()
        if fault == "restart":
            private_pg.stop()
            time.sleep(3)
            private_pg.start()
        elif fault == "crash":
            private_pg.kill()
            time.sleep(1)
            # Meanwhile the API says the database is away (503), without a traceback.
            away = httpx.get(
                server.url + "/api/v1/jobs",
                headers={"Authorization": f"Bearer {server.token}"},
                timeout=30,
            )
            assert away.status_code == 503, away.text
            assert "database unavailable" in away.json()["detail"]
            time.sleep(2)
            private_pg.start()
        else:  # it stops answering, connections left open: longer than the lease
            private_pg.freeze()
            time.sleep(5)
            private_pg.thaw()
        back_at = time.time()
        resumed = server.wait_for(
            lambda: [s for _, s in _ledger_lines(ledger) if s > back_at],
            timeout=15,
            what="firing after the database came back",
        )
        time.sleep(3)
        records = server.runs("default/tick", limit=1000)
    finally:
        server.stop()
    print(f"{fault}: firing resumed {min(resumed) - back_at:.2f}s after the database was back")
    assert min(resumed) - back_at < 5.0
    fired = Counter(scheduled for scheduled, _ in _ledger_lines(ledger))
    assert max(fired.values()) == 1, "an occurrence ran twice"
    # Every second of the outage is caught up (misfire: run_all): it ran, late, once.
    first = int(min(fired))
    seconds = {int(scheduled) for scheduled in fired}
    assert [s for s in range(first, int(back_at)) if s not in seconds] == []
    assert all(started >= scheduled for scheduled, started in _ledger_lines(ledger))
    assert {run["state"] for run in records} <= {"succeeded", "scheduled", "claimed", "running"}
    assert down_at < back_at


def test_two_servers_and_a_worker_ride_out_a_database_outage(
    private_pg: PrivatePostgres, tmp_path: Path
) -> None:
    url = private_pg.create_database("belfry")
    ledger = tmp_path / "ledger"
    first = start_server(tmp_path / "one", url, "--no-worker")
    servers: list[Belfry] = [first]
    fleet = Fleet(first, url, tmp_path)
    try:
        servers.append(start_server(tmp_path / "two", url, "--no-worker"))
        (servers[1].home / "admin-token").write_text(first.token)
        fleet.start("w1", "default", servers=",".join(s.url for s in servers))
        first.apply(
            tmp_path,
            f"""
            jobs:
              - name: tick
                schedule: "* * * * * *"
                misfire: run_all
                command: echo "$BELFRY_SCHEDULED_FOR $(date +%s.%N)" >> {ledger}
              - name: long
                schedule: "@yearly"
                command: echo begin; sleep 10; echo end
            """,
        )
        first.wait_for(lambda: len(_ledger_lines(ledger)) >= 2, what="firing")
        long_run = first.cli_json("run", "default/long")
        first.wait_for(lambda: first.runs("default/long", "running"), what="the long run")
        # Down for longer than the leader's lease (3 s), shorter than a worker's (10 s).
        private_pg.stop()
        time.sleep(7)
        private_pg.start()
        back_at = time.time()
        resumed = first.wait_for(
            lambda: [s for _, s in _ledger_lines(ledger) if s > back_at],
            timeout=15,
            what="firing after the database came back",
        )
        # The run in flight was not disturbed: it ends well, its whole output kept, and
        # no one declared its worker lost.
        final = first.wait_for(
            lambda: [r for r in first.runs("default/long") if r["state"] not in ("running",)],
            timeout=30,
            what="the long run to end",
        )[0]
        logs = first.cli("logs", str(long_run["id"])).stdout
        workers = fleet.cluster()
    finally:
        fleet.close()
        for server in servers:
            server.stop()
    print(f"firing resumed {min(resumed) - back_at:.2f}s after the database was back")
    assert min(resumed) - back_at < 5.0
    assert (final["state"], final["reason"]) == ("succeeded", None)
    assert logs.split() == ["begin", "end"]
    assert [w["state"] for w in workers] == ["active"]
    fired = Counter(scheduled for scheduled, _ in _ledger_lines(ledger))
    assert max(fired.values()) == 1, "an occurrence ran twice"
    seconds = {int(scheduled) for scheduled in fired}
    assert [s for s in range(int(min(fired)), int(back_at)) if s not in seconds] == []
