"""``target: all`` end to end: a real `belfry server` and two real `belfry worker`
processes in one pool; every occurrence runs once on each, as a record of its own."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import start_server
from tests.e2e.fleet import Fleet

pytestmark = pytest.mark.e2e

WORKERS = ("alpha", "beta")


@pytest.fixture
def fleet(store_url: str, tmp_path: Path) -> Iterator[Fleet]:
    server = start_server(tmp_path / "home", store_url, "--no-worker")
    crew = Fleet(server, store_url, tmp_path)
    try:
        for name in WORKERS:
            crew.start(name, "a")
        yield crew
    finally:
        crew.close()
        server.stop()


def _by_occurrence(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        grouped[run["scheduled_for"]].append(run)
    return grouped


def _done_everywhere(runs: list[dict[str, Any]]) -> list[str]:
    """The occurrences whose runs succeeded on every worker."""
    return [
        instant
        for instant, group in _by_occurrence(runs).items()
        if {run["worker"] for run in group if run["state"] == "succeeded"} == set(WORKERS)
    ]


def test_every_occurrence_runs_once_on_each_worker(fleet: Fleet, tmp_path: Path) -> None:
    fleet.belfry.apply(
        tmp_path,
        """
        jobs:
          - {name: everywhere, schedule: "every 1s", command: "echo hi", pool: a, target: all}
        """,
    )
    fleet.belfry.wait_for(
        lambda: len(_done_everywhere(fleet.belfry.runs("default/everywhere"))) >= 3,
        timeout=30,
        what="three occurrences done on both workers",
    )
    runs = fleet.belfry.runs("default/everywhere")
    for instant, group in _by_occurrence(runs).items():
        # One record per worker per occurrence: never two, never a skip.
        assert sorted(run["target"] for run in group) == sorted(WORKERS), instant
        assert {run["attempt"] for run in group} == {1}
        for run in group:
            assert run["state"] in {"scheduled", "claimed", "running", "succeeded"}, run
            if run["state"] != "scheduled":
                assert run["worker"] == run["target"], run
            if run["state"] == "succeeded":
                assert run["exit_code"] == 0


@pytest.mark.on_store("postgresql")
def test_a_manual_trigger_runs_on_each_worker(fleet: Fleet, tmp_path: Path) -> None:
    fleet.belfry.apply(
        tmp_path,
        """
        jobs:
          - name: by-hand
            schedule: "0 0 1 1 *"
            pool: a
            target: all
            command: echo "ran $BELFRY_RUN_ID"
        """,
    )
    done = fleet.belfry.cli("run", "default/by-hand", "--wait", "--output", "json")
    assert done.returncode == 0, done.stderr
    finals = json.loads(done.stdout[done.stdout.index("[") :])
    assert sorted((run["target"], run["worker"], run["state"]) for run in finals) == [
        (name, name, "succeeded") for name in WORKERS
    ]
    for run in finals:
        assert f"ran {run['id']}\n" in done.stdout
    assert len(fleet.belfry.runs("default/by-hand")) == 2
