"""Failover benchmark: how fast a 3-server Belfry on PostgreSQL replaces its leader.

``--rounds`` times (default 20) each, alternating: kill -9 of the leader (a crash: the
others wait for its 3 s lease to run out) and SIGTERM of the leader (a graceful handover:
it lets the lease go). The stopped server is started again each time and the cluster is
whole and calm for ``--calm`` seconds before the next round. Measured per fault, from the
moment of the signal:

* new leader seen: until ``GET /api/v1/cluster`` shows another server leading;
* firing resumed: until the first ledger start of an occurrence due after the fault;
* worst lateness: the worst start - scheduled_for over the occurrences due in the 10 s
  after the fault (the chaos jobs fire every second on two ``belfry worker`` processes).

Every occurrence is also checked as in ``bench/chaos.py`` (none twice, none early, none
missed without a documented record); exits 1 if one was.

Usage: python bench/failover.py [--rounds 20] [--calm 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.chaos.cluster import private_chaos_cluster  # noqa: E402 - the shared harness


def run(rounds: int, calm: float, workdir: Path) -> bool:
    began = time.time()
    with private_chaos_cluster(workdir) as cluster:
        time.sleep(calm)
        for _ in range(rounds):
            # Restart at once: the measure is the takeover, not how long a server is away.
            for inject in (partial(cluster.kill_leader, down=0.0), cluster.sigterm_leader):
                inject()
                cluster.wait_whole()
                time.sleep(calm)
        result = cluster.finish()
    print()
    print(
        f"failover: {rounds} kill -9 and {rounds} SIGTERM of the leader, "
        f"{(time.time() - began) / 60:.1f} min"
    )
    print(result.render())
    return result.report.ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="faults of each kind")
    parser.add_argument("--calm", type=float, default=3.0, help="seconds between faults")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="belfry-failover-"))
    try:
        ok = run(args.rounds, args.calm, workdir)
    except AssertionError as error:  # ChaosError, or a server that would not start
        print(f"failover harness failed: {error}\nlogs kept in {workdir}", file=sys.stderr)
        sys.exit(2)
    if ok:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"logs and ledger kept in {workdir}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
