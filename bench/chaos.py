"""Chaos, the long version: random faults against a 3-server, 2-worker Belfry on PostgreSQL.

For ``--minutes`` (default 30) the harness of ``tests/chaos`` injects faults at random,
paced so that at least ``--faults`` (default 100) fit: kill -9 of the leader, a zombie
leader (SIGSTOP past its lease, then SIGCONT), SIGTERM of the leader, a PostgreSQL restart
or crash, kill -9 of a busy worker, a rolling restart of every server, a server (leader or
not) that hangs for 4-15 s. Then it checks
every occurrence of the chaos jobs against the design's guarantees (none twice, none
early, none missed without a record the job's policy allows) and prints the counts and
the failover-time distribution of the leader faults. Exits 1 if anything was violated,
2 if the harness itself failed (a server that would not start, ...).

Usage: python bench/chaos.py [--minutes 30] [--faults 100] [--seed N] [--keep] [--kinds K,K]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.chaos.cluster import (  # noqa: E402 - the one chaos harness, shared with the test
    LEASE_SECONDS,
    ChaosCluster,
    Fault,
    private_chaos_cluster,
)

# Seconds kept free at the end for the calm spell and the reading of every record.
FINISH_SECONDS = 30.0
SETTLE_SECONDS = 15.0
# The longest calm spell between two faults, however much time is left.
MAX_CALM = 60.0

Injection = Callable[[], Fault]


def _faults(cluster: ChaosCluster, rng: random.Random) -> dict[str, tuple[int, Injection]]:
    """Fault kinds with their weights; each draws its own durations."""
    return {
        "kill_leader": (3, lambda: cluster.kill_leader(down=rng.uniform(0.0, 5.0))),
        "stop_leader": (
            2,
            lambda: cluster.stop_leader(pause=rng.uniform(1.5, 3.0) * LEASE_SECONDS),
        ),
        "sigterm_leader": (2, lambda: cluster.sigterm_leader(down=rng.uniform(0.0, 3.0))),
        "restart_postgres": (2, cluster.restart_postgres),
        "crash_postgres": (2, lambda: cluster.crash_postgres(down=rng.uniform(1.0, 6.0))),
        "kill_worker": (3, lambda: cluster.kill_worker(down=rng.uniform(0.5, 4.0))),
        "rolling_restart": (1, cluster.rolling_restart),
        # A replica that hangs (VM freeze, GC) while the others stay healthy.
        "hang_server": (
            1,
            lambda: cluster.hang_server(rng.uniform(4.0, 15.0), rng.choice(cluster.server_ports)),
        ),
    }


FAULT_KINDS = (
    "kill_leader",
    "stop_leader",
    "sigterm_leader",
    "restart_postgres",
    "crash_postgres",
    "kill_worker",
    "rolling_restart",
    "hang_server",
)


def run(minutes: float, target: int, seed: int, workdir: Path, kinds: list[str]) -> bool:
    rng = random.Random(seed)
    began = time.time()
    with private_chaos_cluster(workdir) as cluster:
        deadline = began + minutes * 60 - FINISH_SECONDS
        chosen = [fault for kind, fault in _faults(cluster, rng).items() if kind in kinds]
        weights = [weight for weight, _ in chosen]
        spent = 0.0  # seconds the faults themselves took, to pace the calm spells
        while time.time() < deadline:
            inject = rng.choices([fault for _, fault in chosen], weights)[0]
            fault = inject()
            cluster.wait_whole()
            spent += time.time() - fault.at
            done = len(cluster.faults)
            left = deadline - time.time()
            per_fault = spent / done
            # Spread what is left over the faults still owed; go faster if behind.
            room = left / max(target - done, 1) - per_fault
            calm = rng.uniform(0.5, max(1.0, min(2 * room, MAX_CALM)))
            time.sleep(max(0.0, min(calm, deadline - time.time())))
        result = cluster.finish(settle=SETTLE_SECONDS)
    print()
    print(f"chaos: {(time.time() - began) / 60:.1f} min, seed {seed}")
    print(result.render(limit=100))
    if len(result.faults) < target:
        print(f"note: {len(result.faults)} faults, fewer than the {target} asked for")
    return result.report.ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--faults", type=int, default=100, help="at least this many")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep logs and ledger")
    parser.add_argument(
        "--kinds",
        default=",".join(FAULT_KINDS),
        help=f"fault kinds to inject, comma-separated (default: all of {', '.join(FAULT_KINDS)})",
    )
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    if unknown := set(kinds) - set(FAULT_KINDS):
        parser.error(f"--kinds: unknown {', '.join(sorted(unknown))}")
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    workdir = Path(tempfile.mkdtemp(prefix="belfry-chaos-"))
    print(f"chaos: {args.minutes:g} min, >= {args.faults} faults, seed {seed}, in {workdir}")
    print(f"fault kinds: {', '.join(kinds)}", flush=True)  # before the progress lines
    try:
        ok = run(args.minutes, args.faults, seed, workdir, kinds)
    except AssertionError as error:  # ChaosError, or a server that would not start
        print(f"chaos harness failed: {error}\nlogs kept in {workdir}", file=sys.stderr)
        sys.exit(2)
    if ok and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"logs and ledger kept in {workdir}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
