"""Chaos, the short version: every fault kind once against a 3-server, 2-worker cluster.

The faults come one after another with a few calm seconds between them: kill -9 of the
leader, a zombie leader (SIGSTOP past its lease, then SIGCONT), a PostgreSQL restart and
a PostgreSQL crash, kill -9 of a busy worker, and a rolling SIGTERM restart of every
server. Then every occurrence of every chaos job must have fired exactly once, never
before its instant, or have a record the design allows (``tests.chaos.checker``).
``bench/chaos.py`` is the long version with random faults.

A second test hangs one replica (SIGSTOP) past a worker's lease while the others stay
healthy: the workers must keep their runs.

The checker is tested first on made-up ledgers: a checker that cannot see a duplicate,
a miss or an early start would make the chaos test pass whatever happened.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.checker import ChaosJob, LedgerLine, WorkerKill, check
from tests.chaos.cluster import ChaosCluster
from tests.private_postgres import PrivatePostgres

# A calm spell after each fault, so the next one does not hide the last one's damage.
CALM_SECONDS = 4.0


@pytest.mark.e2e
@pytest.mark.timeout(480)
def test_chaos_every_occurrence_once(private_pg: PrivatePostgres, tmp_path: Path) -> None:
    began = time.monotonic()
    cluster = ChaosCluster(tmp_path / "chaos", private_pg)
    try:
        cluster.start()
        time.sleep(CALM_SECONDS)
        faults = [
            cluster.kill_leader,
            cluster.stop_leader,
            cluster.restart_postgres,
            cluster.crash_postgres,
            cluster.kill_worker,
            cluster.rolling_restart,
        ]
        for inject in faults:
            inject()
            cluster.wait_whole()
            time.sleep(CALM_SECONDS)
        result = cluster.finish()
    finally:
        cluster.close()
    print(f"\nchaos test: {time.monotonic() - began:.0f} s\n{result.render()}")
    report = result.report
    assert report.expected > 0 and report.fired > 0
    assert {fault.kind for fault in result.faults} == {
        "kill_leader",
        "stop_leader",
        "restart_postgres",
        "crash_postgres",
        "kill_worker",
        "rolling_restart",
    }
    assert all(t.new_leader_after is not None for t in result.timings), (
        "no new leader after a leader fault"
    )
    assert report.duplicates == [], "an occurrence ran twice (guarantee 1)"
    assert report.early == [], (
        "a run started before its instant (seen before c4d699d: a server's estimate of the "
        "database clock ran ahead of it, and workers time starts from that estimate)"
    )
    assert report.misses == [], "an occurrence neither ran nor has a documented record"
    assert report.unrecorded == [], "a run that ran has no run record saying so"
    assert report.unended == [], "a run never ended (guarantee 4)"
    assert report.unexpected == [] and report.malformed == []


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_a_hung_server_does_not_make_the_workers_kill_their_runs(
    private_pg: PrivatePostgres, tmp_path: Path
) -> None:
    """One replica hangs (SIGSTOP) for 15 s, longer than a worker's 10 s lease, while the
    two others stay healthy. The workers are not cut off from the servers, only from one:
    their runs must go on.

    No chaos job fires here: their start and finish reports would make a worker fail over
    by chance before its lease runs out; its heartbeats alone must be enough."""
    cluster = ChaosCluster(tmp_path / "hung", private_pg, jobs=())
    try:
        cluster.start()
        cluster.apply([{"name": "long", "schedule": "0 0 1 1 *", "command": "sleep 40"}])
        run_id = cluster.trigger("default/long")

        def long_run() -> dict[str, Any]:
            run: dict[str, Any] = cluster.api("GET", f"/api/v1/runs/{run_id}")
            return run

        cluster.wait_until(lambda: long_run()["state"] == "running", "the long run", 30)
        # The first server: every worker's --server list names it first.
        cluster.hang_server(pause=15.0)
        time.sleep(2.0)
        after = long_run()
    finally:
        cluster.close()
    print(f"\nthe long run after the hang: {after['state']} ({after['reason']})")
    assert after["state"] == "running", (
        f"a hung replica made the worker give up its run ({after['state']}: "
        f"{after['reason']}) although two servers were healthy: the worker's requests to "
        "the hung server time out only after 10 s, its lease is 10 s, so it never tries "
        "another server in time"
    )


# -- the checker, on made-up ledgers ----------------------------------------------------------

EVERY_SECOND = ChaosJob("tick", misfire="run_all", misfire_max=1000)
T0 = 1_800_000_000  # a whole second, divisible by 60


def _line(instant: int, *, start: float = 0.05, attempt: int = 1, run_id: int = 0) -> LedgerLine:
    return LedgerLine(
        "default/tick", instant, "host", "w1", 1, instant + start, attempt, run_id or instant
    )


def _record(
    instant: int,
    state: str,
    *,
    reason: str | None = None,
    attempt: int = 1,
    worker: str | None = "w1",
    run_id: int = 0,
) -> dict[str, Any]:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(instant))
    return {
        "id": run_id or instant,
        "scheduled_for": stamp,
        "state": state,
        "reason": reason,
        "attempt": attempt,
        "worker": worker,
    }


def _judge(
    lines: list[LedgerLine],
    records: list[dict[str, Any]],
    job: ChaosJob = EVERY_SECOND,
    kills: tuple[WorkerKill, ...] = (),
) -> Any:
    return check([job], lines, {job.key: records}, first=T0, last=T0 + 4, worker_kills=kills)


def test_checker_passes_a_clean_run() -> None:
    instants = range(T0, T0 + 5)
    report = _judge([_line(i) for i in instants], [_record(i, "succeeded") for i in instants])
    assert report.ok and (report.expected, report.fired) == (5, 5)


def test_checker_sees_a_duplicate_an_early_start_and_a_miss() -> None:
    instants = [T0, T0 + 1, T0 + 3, T0 + 4]  # T0 + 2 never ran
    lines = [_line(i) for i in instants]
    lines.append(_line(T0 + 1, run_id=99))  # a twin
    lines[0] = _line(T0, start=-0.002)  # 2 ms early
    records = [_record(i, "succeeded") for i in instants] + [
        _record(T0 + 1, "succeeded", run_id=99)
    ]
    report = _judge(lines, records)
    assert [f.scheduled_for for f in report.duplicates] == [T0 + 1]
    assert [f.scheduled_for for f in report.early] == [T0]
    assert [f.scheduled_for for f in report.misses] == [T0 + 2]
    assert not report.ok


def test_checker_allows_only_what_the_jobs_policy_documents() -> None:
    skip = ChaosJob("tick", misfire="skip")
    once = ChaosJob("tick", misfire="run_once")
    lines = [_line(i) for i in (T0, T0 + 1, T0 + 3, T0 + 4)]
    ran = [_record(i, "succeeded") for i in (T0, T0 + 1, T0 + 3, T0 + 4)]
    skipped = _record(T0 + 2, "skipped", reason="misfire: skip policy")
    assert _judge(lines, [*ran, skipped], skip).ok
    # The same skip is a miss for a job whose policy catches up every occurrence ...
    assert len(_judge(lines, [*ran, skipped], EVERY_SECOND).misses) == 1
    # ... and for run_once, coalescing counts only into a later occurrence that did run.
    into_later = _record(
        T0 + 2,
        "skipped",
        reason="misfire: coalesced into the run for "
        + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0 + 3)),
    )
    into_earlier = _record(
        T0 + 2,
        "skipped",
        reason="misfire: coalesced into the run for "
        + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0 + 1)),
    )
    assert _judge(lines, [*ran, into_later], once).ok
    assert len(_judge(lines, [*ran, into_earlier], once).misses) == 1
    paused = _record(T0 + 2, "skipped", reason="paused")
    assert len(_judge(lines, [*ran, paused], once).misses) == 1


def test_checker_blames_a_lost_run_only_on_a_killed_worker() -> None:
    lines = [_line(i) for i in (T0, T0 + 1, T0 + 3, T0 + 4)]
    ran = [_record(i, "succeeded") for i in (T0, T0 + 1, T0 + 3, T0 + 4)]
    lost = _record(T0 + 2, "lost", reason="worker w1 came back without it")
    killed = (WorkerKill("w1", T0 + 1.5),)
    assert _judge(lines, [*ran, lost], kills=killed).ok
    assert len(_judge(lines, [*ran, lost]).misses) == 1  # nobody killed w1
    long_before = (WorkerKill("w1", T0 - 60),)
    assert len(_judge(lines, [*ran, lost], kills=long_before).misses) == 1
    # A job that retries runs of a lost worker must have run the retry.
    retrying = ChaosJob("tick", misfire="run_all", on_worker_lost="retry")
    assert len(_judge(lines, [*ran, lost], retrying, killed).misses) == 1
    retried = [*lines, _line(T0 + 2, start=2.0, attempt=2, run_id=7)]
    retry_record = _record(T0 + 2, "succeeded", attempt=2, run_id=7)
    report = _judge(retried, [*ran, lost, retry_record], retrying, killed)
    assert report.ok and len(report.retried) == 1
    # The same second attempt without a lost first one is a duplicate.
    first_ok = _record(T0 + 2, "succeeded")
    report = _judge([*retried, _line(T0 + 2)], [*ran, first_ok, retry_record], retrying)
    assert [f.scheduled_for for f in report.duplicates] == [T0 + 2]
