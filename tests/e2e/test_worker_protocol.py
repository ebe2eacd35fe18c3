"""The worker protocol over real HTTP, driven by hand (httpx), against a real server; and
``belfry cluster`` showing the worker."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from belfry.core.protocol import PROTOCOL_VERSION
from tests.e2e.conftest import BELFRY, Belfry

pytestmark = pytest.mark.e2e

WORKER = "remote-1"


def _worker_token(db_url: str, *pools: str) -> str:
    args = [BELFRY, "token", "create", "--db", db_url, "--role", "worker", "--output", "json"]
    for pool in pools:
        args += ["--pool", pool]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    token: str = json.loads(done.stdout)["token"]
    return token


class Agent:
    """A worker agent played by hand."""

    def __init__(self, server: Belfry, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=server.url, headers=headers, timeout=60)

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.http.post(f"/api/v1/workers{path}", json=body)

    def hello(self, **fields: Any) -> httpx.Response:
        body = {
            "name": WORKER,
            "host": "remote-host",
            "pools": ["p1"],
            "tags": {"zone": "a"},
            "capacity": {"slots": 2, "cpu": 2, "memory_mb": 1024},
            "version": "0.0-test",
            "protocol": PROTOCOL_VERSION,
        }
        return self.post("/hello", body | fields)

    def claim_one(self, server: Belfry) -> dict[str, Any]:
        def claimed() -> dict[str, Any] | None:
            reply = self.post(f"/{WORKER}/claim", {"free": {"slots": 1}, "wait": 5})
            assert reply.status_code == 200, reply.text
            orders: list[dict[str, Any]] = reply.json()["orders"]
            assert len(orders) <= 1, "more orders than free slots"
            return orders[0] if orders else None

        order: dict[str, Any] = server.wait_for(claimed, what="an order for pool p1")
        return order

    def report(self, body: dict[str, Any]) -> None:
        reply = self.post(f"/{WORKER}/reports", body)
        assert reply.status_code == 204, reply.text

    def heartbeat(self, running: list[int]) -> list[int]:
        reply = self.post(f"/{WORKER}/heartbeat", {"running": running})
        assert reply.status_code == 200, reply.text
        kills: list[int] = reply.json()["kills"]
        return kills


def _reports(run_id: int) -> dict[str, Any]:
    at = datetime.now(UTC).isoformat()
    return {
        "started": [{"run_id": run_id, "pid": 4242, "host": "remote-host"}],
        "output": [
            {"run_id": run_id, "seq": 0, "stream": "stdout", "data": "hello\n", "at": at},
            {"run_id": run_id, "seq": 1, "stream": "stdout", "data": "world\n", "at": at},
        ],
        "finished": [{"run_id": run_id, "state": "succeeded", "exit_code": 0}],
    }


def test_a_remote_worker_joins_claims_reports_and_shows_in_the_cluster(
    belfry: Belfry, store_url: str, tmp_path: Path
) -> None:
    token = _worker_token(store_url, "p1")
    agent = Agent(belfry, token)

    # Refusals: no token, another protocol, a pool the token is not for.
    assert Agent(belfry, None).hello().status_code == 401
    assert Agent(belfry, "not-a-token").hello().status_code == 401
    mismatch = agent.hello(protocol=PROTOCOL_VERSION + 1)
    assert mismatch.status_code == 426
    detail = mismatch.json()["detail"]
    assert f"protocol {PROTOCOL_VERSION}," in detail and f"speaks {PROTOCOL_VERSION + 1}" in detail
    refused = agent.hello(pools=["p1", "p2"])
    assert refused.status_code == 403 and "p2" in refused.json()["detail"]
    # Calls before a hello: unknown worker.
    assert agent.post(f"/{WORKER}/heartbeat", {}).status_code == 404

    welcome = agent.hello()
    assert welcome.status_code == 200, welcome.text
    assert welcome.json()["name"] == WORKER and welcome.json()["kills"] == []

    belfry.apply(
        tmp_path,
        """
        jobs:
          - name: remote
            pool: p1
            schedule: "every 1s"
            command: echo never run by this test
        """,
    )
    order = agent.claim_one(belfry)
    run_id = order["run_id"]
    assert order["job"] == "default/remote"
    assert order["command"] == "echo never run by this test"
    assert order["attempt"] == 1
    claimed = belfry.api("GET", f"/api/v1/runs/{run_id}")
    assert (claimed["state"], claimed["worker"]) == ("claimed", WORKER)

    agent.report(_reports(run_id))
    done = belfry.api("GET", f"/api/v1/runs/{run_id}")
    assert (done["state"], done["exit_code"], done["host"], done["pid"]) == (
        "succeeded",
        0,
        "remote-host",
        4242,
    )
    logs = belfry.cli("logs", str(run_id))
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "hello\nworld\n"

    # Re-sent reports (a lost reply) change nothing.
    agent.report(_reports(run_id))
    again = belfry.api("GET", f"/api/v1/runs/{run_id}")
    assert again == done
    page = belfry.api("GET", f"/api/v1/runs/{run_id}/output")
    assert [(c["seq"], c["data"]) for c in page["chunks"]] == [(0, "hello\n"), (1, "world\n")]
    assert page["done"] is True
    assert [e["state"] for e in again["events"]] == ["scheduled", "claimed", "running", "succeeded"]

    # A heartbeat listing the finished run is told to kill it: it is no longer its own.
    assert agent.heartbeat([]) == []
    assert agent.heartbeat([run_id]) == [run_id]

    # One run held, started: the cluster shows it running on the worker.
    held = agent.claim_one(belfry)["run_id"]
    agent.report({"started": [{"run_id": held, "pid": 4343, "host": "remote-host"}]})
    assert agent.heartbeat([held]) == []

    cluster = belfry.api("GET", "/api/v1/cluster")
    assert len(cluster["nodes"]) == 1 and cluster["nodes"][0]["leader"] is True
    workers = {worker["name"]: worker for worker in cluster["workers"]}
    remote = workers[WORKER]
    assert {key: remote[key] for key in remote if key not in {"first_seen", "last_seen"}} == {
        "name": WORKER,
        "host": "remote-host",
        "pools": ["p1"],
        "tags": {"zone": "a"},
        "slots": 2,
        "cpu": 2.0,
        "memory_mb": 1024,
        "version": "0.0-test",
        "state": "active",
        "running": 1,
    }
    embedded = [worker for name, worker in workers.items() if name.endswith("/embedded")]
    assert [worker["pools"] for worker in embedded] == [["default"]]
    # A worker token may not look at the cluster.
    assert agent.http.get("/api/v1/cluster").status_code == 403

    # The CLI: JSON is the API's, the table names the worker, its pools, tags and load.
    as_json = belfry.cli_json("cluster")
    # (A node's heartbeat and lease move on between two calls.)
    steady = ("name", "version", "leader", "epoch")
    assert [{k: n[k] for k in steady} for n in as_json["nodes"]] == [
        {k: n[k] for k in steady} for n in cluster["nodes"]
    ]
    assert {w["name"]: w["running"] for w in as_json["workers"]} == {
        name: worker["running"] for name, worker in workers.items()
    }
    assert (
        as_json["workers"][[w["name"] for w in as_json["workers"]].index(WORKER)]
        | {"last_seen": remote["last_seen"]}
        == remote
    )
    table = belfry.cli("cluster")
    assert table.returncode == 0, table.stderr
    [row] = [line.split() for line in table.stdout.splitlines() if line.startswith(WORKER)]
    assert row[:7] == [WORKER, "remote-host", "p1", "zone=a", "2/2/1Gi", "active", "1"]
    assert cluster["nodes"][0]["name"] in table.stdout
    refused_cli = subprocess.run(
        [BELFRY, "cluster"],
        env=belfry.env() | {"BELFRY_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused_cli.returncode == 1 and "not allowed" in refused_cli.stderr

    agent.report({"finished": [{"run_id": held, "state": "failed", "exit_code": 3}]})
    assert belfry.api("GET", f"/api/v1/runs/{held}")["state"] == "failed"
    agent.http.close()
