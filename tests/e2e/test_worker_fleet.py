"""The worker fleet end to end: real `belfry server` and `belfry worker` processes.

Workers in different pools, a worker killed with SIGKILL mid-run, a drain on SIGTERM, a
server restarted under running runs, failover between two servers, declared resources.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e.conftest import start_server
from tests.e2e.fleet import Fleet, running_sleep

pytestmark = pytest.mark.e2e


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def fleet(store_url: str, tmp_path: Path) -> Iterator[Fleet]:
    server = start_server(tmp_path / "home", store_url, "--no-worker")
    crew = Fleet(server, store_url, tmp_path)
    try:
        yield crew
    finally:
        crew.close()
        server.stop()


@pytest.mark.on_store("sqlite")
def test_pools_and_tags_are_never_mismatched(fleet: Fleet, tmp_path: Path) -> None:
    fleet.start("alpha", "a")
    fleet.start("beta", "b", extra=("--tag", "region=eu"))
    fleet.belfry.apply(
        tmp_path,
        """
        jobs:
          - {name: in-a, schedule: "every 1s", command: "true", pool: a}
          - {name: in-b, schedule: "every 1s", command: "true", pool: b, tags: {region: eu}}
          - {name: in-b-us, schedule: "every 1s", command: "true", pool: b, tags: {region: us}}
        """,
    )
    fleet.belfry.wait_for(
        lambda: (
            len(fleet.belfry.runs("default/in-a", "succeeded")) >= 3
            and len(fleet.belfry.runs("default/in-b", "succeeded")) >= 3
        ),
        what="runs in both pools",
    )
    assert {run["worker"] for run in fleet.belfry.runs("default/in-a", "succeeded")} == {"alpha"}
    assert {run["worker"] for run in fleet.belfry.runs("default/in-b", "succeeded")} == {"beta"}
    # No worker carries region=us: those runs wait, and say why.
    waiting = fleet.belfry.wait_for(
        lambda: [run for run in fleet.belfry.runs("default/in-b-us", "scheduled") if run["reason"]],
        what="a waiting reason",
    )
    assert waiting[0]["reason"] == "waiting: no live worker in pool b, tag region=us"
    assert fleet.belfry.runs("default/in-b-us", "succeeded", "running", "claimed") == []
    table = fleet.belfry.cli("cluster")
    assert "alpha" in table.stdout and "beta" in table.stdout


@pytest.mark.parametrize("policy", ["retry", "fail"])
def test_a_killed_worker_loses_its_run_and_the_job_decides(
    fleet: Fleet, tmp_path: Path, policy: str
) -> None:
    marker = tmp_path / "attempts"
    nap = f"8.{os.getpid()}{len(policy)}"  # a sleep this test can find among processes
    first = fleet.start("first", "a")
    fleet.belfry.apply(
        tmp_path,
        f"""
        jobs:
          - name: long
            schedule: "0 0 1 1 *"
            pool: a
            on_worker_lost: {policy}
            command: echo "$BELFRY_ATTEMPT $BELFRY_OCCURRENCE" >> {marker}; sleep {nap}; echo done
        """,
    )
    fleet.belfry.cli("run", "default/long")
    fleet.belfry.wait_for(
        lambda: fleet.belfry.runs("default/long", "running"), what="the run to start"
    )
    first.stop(signal.SIGKILL)
    # The worker's guardian kills what the dead worker ran: no twin for a retry.
    fleet.belfry.wait_for(lambda: not running_sleep(nap), timeout=5, what="the orphan killed")
    second = fleet.start("second", "a")
    lost = fleet.belfry.wait_for(
        lambda: fleet.belfry.runs("default/long", "lost"), timeout=40, what="the run lost"
    )
    assert lost[0]["reason"] == "worker first stopped heartbeating for 15s"
    if policy == "retry":
        done = fleet.belfry.wait_for(
            lambda: fleet.belfry.runs("default/long", "succeeded"), timeout=60, what="the retry"
        )
        assert (done[0]["attempt"], done[0]["worker"]) == (2, second.name)
        attempts = marker.read_text().split("\n")
        # The same occurrence, attempt 2; and the first attempt's process was dead by then.
        assert attempts[0].split()[1] == attempts[1].split()[1]
    else:
        time.sleep(3)
        assert [run["attempt"] for run in fleet.belfry.runs("default/long")] == [1]


@pytest.mark.on_store("postgresql")
def test_drain_lets_runs_finish_then_exits(fleet: Fleet, tmp_path: Path) -> None:
    worker = fleet.start("drainer", "a", extra=("--drain-grace", "30"))
    fleet.belfry.apply(
        tmp_path,
        """
        jobs:
          - {name: slow, schedule: "0 0 1 1 *", pool: a, command: "sleep 3; echo finished"}
        """,
    )
    run = fleet.belfry.cli_json("run", "default/slow")
    fleet.belfry.wait_for(lambda: fleet.belfry.runs("default/slow", "running"), what="running")
    worker.process.send_signal(signal.SIGTERM)
    fleet.belfry.wait_for(
        lambda: any(w["name"] == "drainer" and w["state"] == "draining" for w in fleet.cluster()),
        what="the worker shown as draining",
    )
    assert worker.process.wait(timeout=30) == 0
    (done,) = fleet.belfry.runs("default/slow")
    assert (done["id"], done["state"]) == (run["id"], "succeeded")
    assert "finished" in fleet.belfry.cli("logs", str(run["id"])).stdout


@pytest.mark.on_store("sqlite")
def test_resources_keep_runs_within_the_worker_capacity(fleet: Fleet, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    fleet.start("small", "a", extra=("--cpu", "1", "--memory", "1Gi"))
    fleet.belfry.apply(
        tmp_path,
        f"""
        jobs:
          - name: heavy-1
            schedule: "0 0 1 1 *"
            pool: a
            resources: {{cpu: 1, memory: 512Mi}}
            env: {{LEDGER: "{ledger}"}}
            command: echo start >> $LEDGER; sleep 2; echo end >> $LEDGER
          - name: heavy-2
            schedule: "0 0 1 1 *"
            pool: a
            resources: {{cpu: 1, memory: 512Mi}}
            env: {{LEDGER: "{ledger}"}}
            command: echo start >> $LEDGER; sleep 2; echo end >> $LEDGER
        """,
    )
    fleet.belfry.cli("run", "default/heavy-1")
    fleet.belfry.cli("run", "default/heavy-2")
    fleet.belfry.wait_for(
        lambda: (
            len(fleet.belfry.runs("default/heavy-1", "succeeded"))
            + len(fleet.belfry.runs("default/heavy-2", "succeeded"))
            == 2
        ),
        timeout=30,
        what="both runs",
    )
    events = [line.split()[0] for line in ledger.read_text().splitlines()]
    # One cpu unit: never two at once.
    assert events == ["start", "end", "start", "end"]


def test_runs_go_on_while_the_server_restarts(store_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = start_server(home, store_url, "--no-worker")
    crew = Fleet(server, store_url, tmp_path)
    try:
        crew.start("steady", "a")
        server.apply(
            tmp_path,
            """
            jobs:
              - name: chatty
                schedule: "0 0 1 1 *"
                pool: a
                command: for i in 1 2 3 4 5 6; do echo "line $i"; sleep 1; done
            """,
        )
        run = server.cli_json("run", "default/chatty")
        server.wait_for(lambda: server.runs("default/chatty", "running"), what="running")
        port = server.url.rsplit(":", 1)[1]
        server.stop()
        time.sleep(2)
        server = start_server(home, store_url, "--no-worker", port=int(port))
        crew.belfry = server
        done = server.wait_for(
            lambda: server.runs("default/chatty", "succeeded"), timeout=30, what="the run"
        )
        assert done[0]["id"] == run["id"]
        logs = server.cli("logs", str(run["id"])).stdout
        assert [line for line in logs.splitlines() if line.startswith("line")] == [
            f"line {i}" for i in range(1, 7)
        ]
    finally:
        crew.close()
        server.stop()


def test_worker_fails_over_between_servers(pg_url: str, tmp_path: Path) -> None:
    first = start_server(tmp_path / "one", pg_url, "--no-worker")
    second = start_server(tmp_path / "two", pg_url, "--no-worker")
    # One database, one admin token: the first server made it.
    (second.home / "admin-token").write_text(first.token)
    crew = Fleet(first, pg_url, tmp_path)
    try:
        crew.start("roamer", "a", servers=f"{first.url},{second.url}")
        first.apply(
            tmp_path,
            """
            jobs:
              - name: chatty
                schedule: "0 0 1 1 *"
                pool: a
                command: for i in 1 2 3 4 5 6; do echo "line $i"; sleep 1; done
            """,
        )
        run = first.cli_json("run", "default/chatty")
        first.wait_for(lambda: first.runs("default/chatty", "running"), what="running")
        first.stop()
        crew.belfry = second
        done = second.wait_for(
            lambda: second.runs("default/chatty", "succeeded"), timeout=30, what="the run"
        )
        assert done[0]["id"] == run["id"]
        logs = second.cli("logs", str(run["id"])).stdout
        assert [line for line in logs.splitlines() if line.startswith("line")] == [
            f"line {i}" for i in range(1, 7)
        ]
        # And new work comes from the server that is left.
        again = second.cli_json("run", "default/chatty")
        second.wait_for(
            lambda: any(r["id"] == again["id"] for r in second.runs("default/chatty", "running")),
            what="a run claimed through the second server",
        )
    finally:
        crew.close()
        first.stop()
        second.stop()


@pytest.mark.on_store("postgresql")
def test_kill_reaches_a_remote_run_and_its_escaped_grandchildren(
    fleet: Fleet, tmp_path: Path
) -> None:
    nap = f"600.{os.getpid()}1"
    fleet.start("killer", "a")
    fleet.belfry.apply(
        tmp_path,
        f"""
        jobs:
          - name: stubborn
            schedule: "0 0 1 1 *"
            pool: a
            command: setsid sleep {nap} & sleep {nap}
        """,
    )
    run = fleet.belfry.cli_json("run", "default/stubborn")
    fleet.belfry.wait_for(lambda: running_sleep(nap), what="the processes to start")
    fleet.belfry.wait_for(lambda: fleet.belfry.runs("default/stubborn", "running"), what="running")
    asked = time.monotonic()
    assert fleet.belfry.cli("kill", str(run["id"])).returncode == 0
    fleet.belfry.wait_for(lambda: not running_sleep(nap), timeout=10, what="the tree killed")
    print(f"remote tree killed {time.monotonic() - asked:.2f}s after the request")
    done = fleet.belfry.wait_for(
        lambda: fleet.belfry.runs("default/stubborn", "killed"), what="recorded as killed"
    )
    assert done[0]["id"] == run["id"]


def test_a_worker_cut_off_past_its_lease_kills_its_runs(sqlite_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = start_server(home, sqlite_url, "--no-worker")
    crew = Fleet(server, sqlite_url, tmp_path)
    nap = f"300.{os.getpid()}2"
    try:
        crew.start("islander", "a")
        server.apply(
            tmp_path,
            f"""
            jobs:
              - {{name: long, schedule: "0 0 1 1 *", pool: a, command: "sleep {nap}"}}
            """,
        )
        server.cli("run", "default/long")
        server.wait_for(lambda: running_sleep(nap), what="the run to start")
        port = int(server.url.rsplit(":", 1)[1])
        server.stop()
        cut_off = time.monotonic()
        # The lease is 10 s: within it the run goes on, past it the worker kills it.
        time.sleep(6)
        assert running_sleep(nap), "killed before the lease ran out"
        deadline = cut_off + 20
        while running_sleep(nap) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not running_sleep(nap), "the run outlived the worker's lease"
        print(f"killed {time.monotonic() - cut_off:.1f}s after the server went away")
        server = start_server(home, sqlite_url, "--no-worker", port=port)
        crew.belfry = server
        ended = server.wait_for(
            lambda: server.runs("default/long", "lost", "killed"), timeout=40, what="the ending"
        )
        assert ended and not server.runs("default/long", "succeeded", "running")
    finally:
        crew.close()
        server.stop()
