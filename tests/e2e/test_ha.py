"""High availability on PostgreSQL: two servers, one leader; the leader killed or stopped.

Every occurrence must fire once: never twice across the failover, none lost (those due
during the gap are caught up per the misfire policy, and every one has a record).
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e.conftest import Belfry, start_server

pytestmark = pytest.mark.e2e


def _instant(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _leader(servers: list[Belfry]) -> Belfry:
    def find() -> Belfry | None:
        nodes = servers[0].api("GET", "/api/v1/cluster")["nodes"]
        leaders = [node["name"] for node in nodes if node["leader"]]
        for server in servers:
            if leaders and leaders[0].endswith(":" + server.url.rsplit(":", 1)[1]):
                return server
        return None

    found: Belfry = servers[0].wait_for(find, what="a leader")
    return found


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_failover_fires_every_occurrence_once(pg_url: str, tmp_path: Path, how: int) -> None:
    ledger = tmp_path / "ledger"
    servers = [start_server(tmp_path / "one", pg_url)]
    servers.append(start_server(tmp_path / "two", pg_url))
    (servers[1].home / "admin-token").write_text(servers[0].token)
    try:
        servers[0].apply(
            tmp_path,
            f"""
            jobs:
              - name: tick
                schedule: "* * * * * *"
                command: echo "$BELFRY_SCHEDULED_FOR $(date +%s.%N)" >> {ledger}
            """,
        )
        servers[0].wait_for(lambda: ledger.exists() and ledger.read_text(), what="firing")
        leader = _leader(servers)
        survivor = next(server for server in servers if server is not leader)
        time.sleep(2)
        stopped_at = time.time()
        leader.process.send_signal(how)
        leader.process.wait(timeout=30)
        time.sleep(8)
        end = time.time()
        nodes = survivor.api("GET", "/api/v1/cluster")["nodes"]
        port = survivor.url.rsplit(":", 1)[1]
        assert [n["leader"] for n in nodes if n["name"].endswith(":" + port)] == [True]
        records = survivor.runs("default/tick", limit=1000)
    finally:
        for server in servers:
            server.stop()
    lines = [line.split() for line in ledger.read_text().splitlines()]
    fired = Counter(scheduled for scheduled, _ in lines)
    assert max(fired.values()) == 1, "an occurrence ran twice"
    # No miss: every second up to shortly before the end has one record (a run, or a skip
    # saying why), the ones due while no server led included.
    seconds = Counter(int(_instant(run["scheduled_for"])) for run in records if run["attempt"] == 1)
    first, last = min(seconds), int(end) - 2
    assert [s for s in range(first, last) if seconds[s] != 1] == []
    if how == signal.SIGTERM:
        # A graceful stop disturbs nothing: the stopping server hands its embedded worker's
        # unstarted runs back, and every occurrence runs, on time, the gap's included.
        ran = {int(_instant(scheduled)) for scheduled, _ in lines}
        assert [s for s in range(first, last) if s not in ran] == []
        late = [float(started) - _instant(scheduled) for scheduled, started in lines]
        assert max(late) < 1.0, f"a run started {max(late):.2f}s late across the handover"
    # Firing resumed: the first start after the stop, against the stop.
    after = sorted(float(started) for _, started in lines if float(started) > stopped_at)
    assert after, "nothing fired after the leader went away"
    print(f"first start {after[0] - stopped_at:.2f}s after the leader was stopped")
    assert any(started > end - 3 for started in after), "firing did not go on"
