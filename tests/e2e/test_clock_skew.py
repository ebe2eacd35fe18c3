"""Clocks that lie: a worker or a server whose clock is wrong, under libfaketime.

Due-ness is decided on the database's clock; a worker times each start from the server's
time in the claim reply, not its own clock; a server whose clock is more than 2 s off the
database's refuses the leadership and says why in /readyz and ``belfry cluster``.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Belfry, start_server
from tests.e2e.fleet import Fleet
from tests.e2e.test_ha import _instant

pytestmark = pytest.mark.e2e

# The job's own clock reading must be the real one: the faked clock is for Belfry only.
REAL_NOW = "env -u LD_PRELOAD -u FAKETIME date +%s.%N"


def faketime(offset: str) -> dict[str, str]:
    """The environment that runs a process with its wall clock off by ``offset``
    (libfaketime preloaded; monotonic time stays real, as on a badly set host). Preloaded
    rather than through the ``faketime`` program, which would stand between the test and
    the process it signals (a SIGKILL would leave the real process running)."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    assert found, "libfaketime is missing: run scripts/ensure-system-packages.sh (apt: faketime)"
    return {"LD_PRELOAD": found[0], "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


@pytest.fixture
def fleet(sqlite_url: str, tmp_path: Path) -> Iterator[Fleet]:
    server = start_server(tmp_path / "home", sqlite_url, "--no-worker")
    crew = Fleet(server, sqlite_url, tmp_path)
    try:
        yield crew
    finally:
        crew.close()
        server.stop()


@pytest.mark.parametrize("offset", ["+30s", "-30s"])
def test_a_worker_with_a_wrong_clock_starts_runs_on_time(
    fleet: Fleet, tmp_path: Path, offset: str
) -> None:
    ledger = tmp_path / "ledger"
    fleet.start("skewed", "default", env=faketime(offset))
    fleet.belfry.apply(
        tmp_path,
        f"""
        jobs:
          - name: tick
            schedule: "* * * * * *"
            command: echo "$BELFRY_SCHEDULED_FOR $({REAL_NOW}) $(date +%s.%N)" >> {ledger}
        """,
    )
    fleet.belfry.wait_for(
        lambda: ledger.exists() and len(ledger.read_text().splitlines()) >= 5,
        what="five runs on the skewed worker",
    )
    lines = [line.split() for line in ledger.read_text().splitlines()]
    # The worker (and what it starts) really lives 30 s off.
    skew = float(lines[0][2]) - float(lines[0][1])
    assert abs(skew - float(offset.rstrip("s"))) < 1.0, f"the worker's clock is off by {skew}"
    lateness = [float(started) - _instant(scheduled) for scheduled, started, _ in lines]
    # Never early (a clock 30 s fast would start each run as soon as it is handed out,
    # up to 1.5 s ahead), and not 30 s late either.
    assert min(lateness) >= 0, f"started early: {lateness}"
    assert max(lateness) < 1.0, f"started late: {lateness}"


def test_a_server_with_a_wrong_clock_refuses_the_leadership(pg_url: str, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    skewed = start_server(tmp_path / "skewed", pg_url, "--no-worker", env=faketime("+5s"))
    servers: list[Belfry] = [skewed]
    try:
        ready = skewed.wait_for(
            lambda: _readyz(skewed).get("clock", "ok") != "ok" and _readyz(skewed),
            what="/readyz to report the clock",
        )
        assert ready["status"] == "unavailable"
        assert "5.0s ahead of the database's" in ready["clock"]
        assert "will not lead" in skewed.log_path.read_text()
        # The offset is recorded with the node's next round.
        nodes = skewed.wait_for(
            lambda: [
                n
                for n in skewed.api("GET", "/api/v1/cluster")["nodes"]
                if n["clock_offset"] is not None
            ],
            what="the node's clock offset",
        )
        assert [(n["leader"], n["refuses_leadership"]) for n in nodes] == [(False, True)]
        assert -5.3 < nodes[0]["clock_offset"] < -4.7
        table = skewed.cli("cluster").stdout
        assert "(off: will not lead)" in table, table
        # A server with a sane clock takes the lead; the jobs fire through it.
        sane = start_server(tmp_path / "sane", pg_url)
        servers.append(sane)
        (sane.home / "admin-token").write_text(skewed.token)
        skewed.apply(
            tmp_path,
            f"""
            jobs:
              - name: tick
                schedule: "* * * * * *"
                command: echo "$BELFRY_SCHEDULED_FOR $({REAL_NOW})" >> {ledger}
            """,
        )
        sane.wait_for(lambda: ledger.exists() and ledger.read_text(), what="firing")
        leaders = [n["name"] for n in sane.api("GET", "/api/v1/cluster")["nodes"] if n["leader"]]
        assert leaders == [f"{_host(sane)}"]
        assert _readyz(sane)["clock"] == "ok"
    finally:
        for server in servers:
            server.stop()


def _readyz(server: Belfry) -> dict[str, str]:
    answer: dict[str, str] = httpx.get(server.url + "/readyz", timeout=5).json()
    return answer


def _host(server: Belfry) -> str:
    nodes = server.api("GET", "/api/v1/cluster")["nodes"]
    port = server.url.rsplit(":", 1)[1]
    names: list[str] = [n["name"] for n in nodes if n["name"].endswith(":" + port)]
    return names[0]
