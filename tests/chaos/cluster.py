"""A Belfry cluster to break: three servers and two workers on a private PostgreSQL.

Real processes only: ``belfry server --no-worker`` (three, each its own port and BELFRY_HOME,
sharing one database), two ``belfry worker`` given all three server URLs, and a PostgreSQL
cluster of the harness's own (``tests.private_postgres``) that it may restart or crash.
The chaos jobs fire every second or two and append a ledger line as their command starts
(``tests.chaos.checker`` reads it), print ``run RUN_ID by WORKER`` (their output, for
tests to read back), then sleep a little so a killed worker catches runs in flight.

Each fault is a method that injects it, waits for the cluster to be whole again, and
returns a ``Fault`` record; leader faults also measure how long until another server is
seen leading in ``GET /api/v1/cluster``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.chaos.checker import (
    ChaosJob,
    CheckReport,
    Failover,
    FailoverTiming,
    LedgerLine,
    WorkerKill,
    check,
    failover_timings,
    parse_ledger,
    render_timings,
)
from tests.e2e.conftest import BELFRY, Belfry, free_port, start_server
from tests.private_postgres import PrivatePostgres

__all__ = [
    "DEFAULT_JOBS",
    "ChaosCluster",
    "ChaosError",
    "ChaosResult",
    "Fault",
    "expected_output",
    "private_chaos_cluster",
]

# The chaos jobs: one per misfire policy and one that retries runs of a lost worker, so the
# checker holds each to what its own policy promises.
DEFAULT_JOBS = (
    ChaosJob("tick-all", misfire="run_all", misfire_max=1000),
    ChaosJob("tick-once", misfire="run_once"),
    ChaosJob("tick-retry", misfire="run_all", misfire_max=1000, on_worker_lost="retry"),
    ChaosJob("tick-skip-2s", period=2, misfire="skip"),
)
# How long a chaos command runs after writing its ledger line: long enough that a worker
# killed a little after a whole second has runs in flight.
RUN_SECONDS = 0.3
# What a chaos command prints after its ledger line: ``expected_output`` of its run.
OUTPUT_COMMAND = 'echo "run $BELFRY_RUN_ID by $CHAOS_WORKER"'
# The leader's lease (belfry.services.leadership): a zombie pause must outlast it.
LEASE_SECONDS = 3.0
# How long the harness waits for a new leader, a server or a worker before giving up.
PATIENCE = 45.0
# Occurrences are expected from this long after the jobs were applied (their cursors start
# at the next instant) to this long before the end (so every one has had time to start).
WINDOW_START_MARGIN = 2.0
WINDOW_END_MARGIN = 3.0
# Failover timings look at the occurrences due this long after each leader fault.
FAILOVER_WINDOW = 10.0


class ChaosError(AssertionError):
    """The cluster did not do what the harness needs (a server would not start, ...)."""


@dataclass
class Fault:
    kind: str
    target: str
    at: float  # wall-clock time the fault was injected
    ended: float = 0.0  # the cluster was whole again
    failover: Failover | None = None
    note: str = ""

    def describe(self) -> str:
        text = f"{self.kind:<16} {self.target:<22} {self.ended - self.at:5.1f} s"
        if self.failover is not None:
            seen = self.failover.new_leader_after
            text += f"  new leader {'never' if seen is None else f'after {seen:.2f} s'}"
        return text + (f"  {self.note}" if self.note else "")


@dataclass
class ChaosResult:
    report: CheckReport
    timings: list[FailoverTiming]
    faults: list[Fault]

    def render(self, limit: int = 40, notes: int = 10) -> str:
        """Faults by kind, the checker's counts and findings (``limit`` of each kind of
        violation, ``notes`` of each kind of allowed event), and the failover timings."""
        kinds = Counter(fault.kind for fault in self.faults)
        out = [
            f"faults: {len(self.faults)} ("
            + ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))
            + ")",
            self.report.render(limit, notes),
        ]
        if self.timings:
            out.append(render_timings(self.timings, FAILOVER_WINDOW))
        return "\n".join(out)


@dataclass
class _ServerSlot:
    port: int
    home: Path
    belfry: Belfry | None = None
    paused: bool = False
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def owns(self, node_name: str) -> bool:
        """Node names are ``HOST:PORT``; the servers share a host."""
        return node_name.endswith(f":{self.port}")

    @property
    def alive(self) -> bool:
        return self.belfry is not None and self.belfry.process.poll() is None

    @property
    def answering(self) -> bool:
        return self.alive and not self.paused

    @property
    def process(self) -> subprocess.Popen[bytes]:
        if self.belfry is None:
            raise ChaosError(f"server :{self.port} was never started")
        return self.belfry.process


@dataclass
class _WorkerSlot:
    name: str
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    starts: int = 0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def expected_output(run_id: int, worker: str) -> str:
    """The whole output of chaos run ``run_id`` run by ``worker`` (``OUTPUT_COMMAND``)."""
    return f"run {run_id} by {worker}\n"


def _progress(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


@dataclass
class ChaosCluster:
    """``start()``, inject faults, ``records()`` and ``ledger()``, then ``close()``."""

    workdir: Path
    postgres: PrivatePostgres
    jobs: tuple[ChaosJob, ...] = DEFAULT_JOBS
    server_count: int = 3
    worker_count: int = 2
    say: Callable[[str], None] = _progress
    faults: list[Fault] = field(default_factory=list)
    applied_at: float = 0.0
    db_url: str = ""
    _servers: list[_ServerSlot] = field(default_factory=list)
    _workers: list[_WorkerSlot] = field(default_factory=list)
    _admin_token: str = ""
    _worker_token: str = ""
    _http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=5.0))
    # Added to the environment of every process started from now on (servers, workers,
    # the CLI): e.g. PYTHONPATH to another release's code.
    code_env: dict[str, str] = field(default_factory=dict)

    @property
    def ledger_path(self) -> Path:
        return self.workdir / "ledger"

    # -- starting ---------------------------------------------------------------------------
    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db_url = self.postgres.create_database("belfry_chaos")
        self._servers = [
            _ServerSlot(free_port(), self.workdir / f"server-{n}") for n in range(self.server_count)
        ]
        first = self._servers[0]
        self._start_server(first)
        assert first.belfry is not None
        self._admin_token = first.belfry.token
        for slot in self._servers[1:]:
            # The first server made the admin token; the others find tokens exist and make
            # none, so the CLI and the harness use the first one's everywhere.
            slot.home.mkdir(parents=True, exist_ok=True)
            token_file = slot.home / "admin-token"
            token_file.write_text(self._admin_token + "\n")
            token_file.chmod(0o600)
            self._start_server(slot)
        self._worker_token = self._create_worker_token()
        self._workers = [_WorkerSlot(f"chaos-worker-{n}") for n in range(self.worker_count)]
        for worker in self._workers:
            self._start_worker(worker)
        self.apply_jobs()
        self.wait_until(self._every_job_fired, "every chaos job to fire", PATIENCE)
        self.say(f"cluster up: leader {self.leader()}; {len(self.jobs)} jobs firing")

    def _start_server(self, slot: _ServerSlot) -> None:
        log = slot.home / "server.log"
        if log.exists():  # start_server truncates it: keep each incarnation's log
            log.rename(slot.home / f"server.{slot.starts}.log")
        slot.belfry = start_server(
            slot.home, self.db_url, "--no-worker", port=slot.port, env=self.code_env
        )
        slot.paused = False
        slot.starts += 1

    def _create_worker_token(self) -> str:
        create = [BELFRY, "token", "create", "--db", self.db_url, "--role", "worker"]
        done = subprocess.run(
            [*create, "--pool", "default", "--output", "json"],
            env={**os.environ, **self.code_env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise ChaosError(f"belfry token create failed: {done.stderr}")
        token: str = json.loads(done.stdout)["token"]
        return token

    def add_worker(self, name: str) -> None:
        """Start one more worker, ``name``, on the code of ``code_env`` as it is now (e.g.
        this release's beside the previous release's workers)."""
        worker = _WorkerSlot(name)
        self._workers.append(worker)
        self._start_worker(worker)

    def _start_worker(self, worker: _WorkerSlot) -> None:
        worker.log = self.workdir / f"{worker.name}.{worker.starts}.log"
        servers = ",".join(slot.url for slot in self._servers)
        with worker.log.open("wb") as output:  # the child keeps its own copy
            worker.process = subprocess.Popen(
                [BELFRY, "worker", "--server", servers, "--name", worker.name, "--pool", "default"],
                env={
                    **os.environ,
                    **self.code_env,
                    "BELFRY_TOKEN": self._worker_token,
                    # The commands inherit the worker's environment: the ledger names it.
                    "CHAOS_WORKER": worker.name,
                    "CHAOS_HOST": socket.gethostname(),
                },
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        worker.starts += 1
        log = worker.log

        def joined() -> bool:
            if not worker.alive:
                raise ChaosError(f"worker {worker.name} exited:\n{log.read_text()[-3000:]}")
            return " joined " in log.read_text()

        self.wait_until(joined, f"worker {worker.name} to join", PATIENCE)

    def apply_jobs(self) -> None:
        command = (
            'echo "$BELFRY_JOB $BELFRY_SCHEDULED_FOR $CHAOS_HOST $CHAOS_WORKER $$ '
            f'$(date +%s.%N) $BELFRY_ATTEMPT $BELFRY_RUN_ID" >> {self.ledger_path}; '
            f"{OUTPUT_COMMAND}; sleep {RUN_SECONDS}"
        )
        self.apply([job.spec(command) for job in self.jobs])
        self.applied_at = time.time()

    def apply(self, specs: list[dict[str, Any]]) -> None:
        """``belfry apply`` these jobs (JSON is YAML, and spares commands any escaping)."""
        jobs_file = self.workdir / f"jobs-{time.monotonic_ns()}.yaml"
        jobs_file.write_text(json.dumps({"jobs": specs}))
        done = self._cli("apply", "-f", str(jobs_file))
        if done.returncode != 0:
            raise ChaosError(f"belfry apply failed: {done.stdout}{done.stderr}")

    def trigger(self, job: str) -> int:
        """Run ``job`` now (``POST .../run``); returns the run's id."""
        group, name = job.split("/")
        made: dict[str, Any] = self.api("POST", f"/api/v1/jobs/{group}/{name}/run")
        run_id: int = made["id"]
        return run_id

    def _cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        server = next(slot for slot in self._servers if slot.answering)
        return subprocess.run(
            [BELFRY, *args],
            env={
                **os.environ,
                **self.code_env,
                "BELFRY_SERVER": server.url,
                "BELFRY_TOKEN": self._admin_token,
            },
            capture_output=True,
            text=True,
            timeout=60,
        )

    def _every_job_fired(self) -> bool:
        lines, _ = self.ledger()
        return {line.job for line in lines} >= {job.key for job in self.jobs}

    # -- looking at it ----------------------------------------------------------------------
    def api(self, method: str, path: str, *, patience: float = 30.0, **kwargs: Any) -> Any:
        """Call the API on any server that answers (5xx and unreachable ones are skipped),
        retrying for up to ``patience`` seconds: servers and the database come and go."""
        deadline = time.monotonic() + patience
        while True:
            errors = []
            for slot in self._servers:
                if not slot.answering:
                    continue
                try:
                    response = self._http.request(
                        method,
                        slot.url + path,
                        headers={"Authorization": f"Bearer {self._admin_token}"},
                        **kwargs,
                    )
                except httpx.HTTPError as error:
                    errors.append(f":{slot.port} {type(error).__name__}")
                    continue
                if response.status_code >= 500:
                    errors.append(f":{slot.port} HTTP {response.status_code}")
                    continue
                response.raise_for_status()
                return response.json() if response.content else None
            if time.monotonic() > deadline:
                raise ChaosError(f"no server answered {method} {path}: {errors}")
            time.sleep(0.1)

    def leader(self, patience: float = PATIENCE) -> str:
        """The node that leads now (waiting for one if need be)."""
        found: str = self.wait_until(self._current_leader, "a leader", patience)
        return found

    def _current_leader(self) -> str | None:
        nodes = self.api("GET", "/api/v1/cluster", patience=2.0, timeout=2.0)["nodes"]
        leaders = [node["name"] for node in nodes if node["leader"]]
        return leaders[0] if leaders else None

    def _slot_of(self, node_name: str) -> _ServerSlot:
        for slot in self._servers:
            if slot.owns(node_name):
                return slot
        raise ChaosError(f"no server of this cluster is named {node_name}")

    def _await_new_leader(self, kind: str, at: float, old: str, patience: float) -> Failover:
        """Poll the cluster view until a server other than ``old`` leads."""
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            try:
                leader = self._current_leader()
            except ChaosError:
                leader = None
            if leader is not None and leader != old:
                return Failover(kind, at, old, leader, time.time() - at)
            time.sleep(0.05)
        return Failover(kind, at, old, None, None)

    def ledger(self) -> tuple[list[LedgerLine], list[str]]:
        return parse_ledger(self.ledger_path)

    def records(self) -> dict[str, list[dict[str, Any]]]:
        """Every run record of every chaos job (all pages of GET /api/v1/runs)."""
        return {job.key: self._job_records(job.key) for job in self.jobs}

    def _job_records(self, job: str) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        params: dict[str, Any] = {"job": job, "limit": 1000}
        while True:
            page: list[dict[str, Any]] = self.api("GET", "/api/v1/runs", params=params)
            records += page
            if len(page) < params["limit"]:
                return records
            params["before"] = min(record["id"] for record in page)

    def output(self, run_id: int) -> str:
        """Run ``run_id``'s output as the API returns it (every stream, in order)."""
        page = self.api("GET", f"/api/v1/runs/{run_id}/output", params={"limit": 10000})
        return "".join(chunk["data"] for chunk in page["chunks"])

    @property
    def worker_kills(self) -> list[WorkerKill]:
        return [WorkerKill(f.target, f.at) for f in self.faults if f.kind == "kill_worker"]

    @property
    def failovers(self) -> list[Failover]:
        return [f.failover for f in self.faults if f.failover is not None]

    def wait_until(self, predicate: Callable[[], Any], what: str, patience: float) -> Any:
        deadline = time.monotonic() + patience
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise ChaosError(f"timed out after {patience:g} s waiting for {what}")
            time.sleep(0.1)

    def wait_whole(self) -> None:
        """Every process up, every server answering, and a leader."""
        for slot in self._servers:
            if not slot.alive:
                raise ChaosError(f"server :{slot.port} is down:\n{self.server_log_tail(slot)}")
        for worker in self._workers:
            if not worker.alive:
                tail = worker.log.read_text()[-3000:] if worker.log is not None else ""
                raise ChaosError(f"worker {worker.name} is down:\n{tail}")
        self.leader()

    def server_log_tail(self, slot: _ServerSlot, size: int = 3000) -> str:
        log = slot.home / "server.log"
        return log.read_text()[-size:] if log.exists() else ""

    # -- faults -----------------------------------------------------------------------------
    def _record(self, fault: Fault) -> Fault:
        fault.ended = time.time()
        self.faults.append(fault)
        self.say(f"fault {len(self.faults):>3}: {fault.describe()}")
        return fault

    def kill_leader(self, down: float = 3.0) -> Fault:
        """kill -9 the leader; start it again ``down`` seconds later (or once another
        server leads, if that takes longer)."""
        old = self.leader()
        slot = self._slot_of(old)
        at = time.time()
        slot.process.send_signal(signal.SIGKILL)
        slot.process.wait(timeout=30)
        failover = self._await_new_leader("kill_leader", at, old, PATIENCE)
        time.sleep(max(0.0, at + down - time.time()))
        self._start_server(slot)
        return self._record(Fault("kill_leader", old, at, failover=failover))

    def stop_leader(self, pause: float = 2 * LEASE_SECONDS) -> Fault:
        """SIGSTOP the leader for longer than its lease, then SIGCONT it: a zombie that
        wakes up believing it leads, whose writes the fencing epoch must refuse."""
        old = self.leader()
        slot = self._slot_of(old)
        at = time.time()
        slot.process.send_signal(signal.SIGSTOP)
        slot.paused = True
        try:
            failover = self._await_new_leader("stop_leader", at, old, pause)
            time.sleep(max(0.0, at + pause - time.time()))
        finally:
            slot.process.send_signal(signal.SIGCONT)
            slot.paused = False
        if failover.new_leader is None:  # no other leader while it slept: keep looking
            failover = self._await_new_leader("stop_leader", at, old, PATIENCE)
        return self._record(Fault("stop_leader", old, at, failover=failover))

    def sigterm_leader(self, down: float = 1.0) -> Fault:
        """SIGTERM the leader (a graceful handover), start it again after ``down`` s."""
        old = self.leader()
        slot = self._slot_of(old)
        at = time.time()
        slot.process.send_signal(signal.SIGTERM)
        failover = self._await_new_leader("sigterm_leader", at, old, PATIENCE)
        self._wait_exit(slot)
        time.sleep(max(0.0, at + down - time.time()))
        self._start_server(slot)
        return self._record(Fault("sigterm_leader", old, at, failover=failover))

    def _wait_exit(self, slot: _ServerSlot) -> None:
        try:
            slot.process.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            slot.process.kill()
            slot.process.wait()
            raise ChaosError(
                f"server :{slot.port} did not stop within {PATIENCE:g} s of SIGTERM:\n"
                + self.server_log_tail(slot)
            ) from None

    def hang_server(self, pause: float, port: int | None = None) -> Fault:
        """SIGSTOP one server for ``pause`` s, then SIGCONT it: a replica that hangs (a VM
        freeze, a long GC) while the others stay healthy. By default the first server,
        which every worker's ``--server`` list names first."""
        slot = self._servers[0] if port is None else self._slot_by_port(port)
        leader = self.leader()
        at = time.time()
        slot.process.send_signal(signal.SIGSTOP)
        slot.paused = True
        try:
            time.sleep(pause)
        finally:
            slot.process.send_signal(signal.SIGCONT)
            slot.paused = False
        role = "leader" if slot.owns(leader) else "follower"
        return self._record(Fault("hang_server", f":{slot.port} ({role})", at))

    def _slot_by_port(self, port: int) -> _ServerSlot:
        for slot in self._servers:
            if slot.port == port:
                return slot
        raise ChaosError(f"no server of this cluster listens on {port}")

    @property
    def server_ports(self) -> list[int]:
        return [slot.port for slot in self._servers]

    def restart_postgres(self) -> Fault:
        """A clean PostgreSQL restart (``pg_ctl stop -m fast`` then start)."""
        at = time.time()
        self.postgres.restart()
        return self._record(Fault("restart_postgres", "postgres", at))

    def crash_postgres(self, down: float = 3.0) -> Fault:
        """SIGKILL the postmaster, leave the database down ``down`` s, start it again
        (it recovers from its WAL)."""
        at = time.time()
        self.postgres.kill()
        time.sleep(down)
        for attempt in range(5):
            try:
                self.postgres.start()
                break
            except RuntimeError:
                # Backends of the killed postmaster may still hold its shared memory.
                if attempt == 4:
                    raise
                time.sleep(1.0)
        note = f"down {down:.1f} s"
        return self._record(Fault("crash_postgres", "postgres", at, note=note))

    def kill_worker(self, down: float = 2.0) -> Fault:
        """kill -9 the busier worker just after a whole second (its runs of that second
        are in their sleep), start it again under the same name ``down`` s later."""
        time.sleep(1.0 - time.time() % 1.0 + 0.1)
        held = {
            worker["name"]: worker["running"]
            for worker in self.api("GET", "/api/v1/cluster", patience=2.0, timeout=2.0)["workers"]
        }
        worker = max(self._workers, key=lambda w: (w.alive, held.get(w.name, 0)))
        assert worker.process is not None
        at = time.time()
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait(timeout=30)
        time.sleep(down)
        self._start_worker(worker)
        note = f"{held.get(worker.name, 0)} runs held"
        return self._record(Fault("kill_worker", worker.name, at, note=note))

    def rolling_restart(self) -> Fault:
        """SIGTERM each server in turn, start it again and wait for it to answer before
        the next (a deploy). The leader's turn is measured as a handover."""
        at = time.time()
        failover = None
        for slot in self._servers:
            leader = self._current_leader()
            started = time.time()
            slot.process.send_signal(signal.SIGTERM)
            if leader is not None and slot.owns(leader):
                failover = self._await_new_leader("sigterm_leader", started, leader, PATIENCE)
            self._wait_exit(slot)
            self._start_server(slot)
        return self._record(Fault("rolling_restart", "all servers", at, failover=failover))

    # -- judging ----------------------------------------------------------------------------
    def finish(self, settle: float = 8.0) -> ChaosResult:
        """Let the cluster run calm for ``settle`` s, then read the ledger and every run
        record and judge them (``tests.chaos.checker``)."""
        self.wait_whole()
        time.sleep(settle)
        self.wait_whole()
        end = time.time()
        records = self.records()
        ledger, malformed = self.ledger()
        last = end - WINDOW_END_MARGIN
        report = check(
            self.jobs,
            ledger,
            records,
            first=self.applied_at + WINDOW_START_MARGIN,
            last=last,
            worker_kills=self.worker_kills,
            fault_times=[fault.at for fault in self.faults],
            malformed=malformed,
        )
        timings = failover_timings(
            self.failovers, self.jobs, ledger, window=FAILOVER_WINDOW, until=last
        )
        return ChaosResult(report, timings, list(self.faults))

    # -- stopping ---------------------------------------------------------------------------
    def close(self) -> None:
        for slot in self._servers:
            if slot.paused and slot.alive:
                slot.process.send_signal(signal.SIGCONT)
                slot.paused = False
        for worker in self._workers:
            if worker.alive:
                assert worker.process is not None
                # No drain: its guardian kills what it ran, and nothing is judged now.
                worker.process.kill()
                worker.process.wait()
        for slot in self._servers:
            if slot.belfry is not None:
                slot.belfry.stop()
        self._http.close()


@contextmanager
def private_chaos_cluster(workdir: Path, **options: Any) -> Iterator[ChaosCluster]:
    """A started cluster on a PostgreSQL of its own, all of it stopped and thrown away on
    exit (the bench scripts; the test uses the ``private_pg`` fixture instead)."""
    postgres = PrivatePostgres()
    try:
        postgres.start()
        cluster = ChaosCluster(workdir, postgres, **options)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.close()
    finally:
        postgres.destroy()
