"""One ``belfry server`` process: the store, the services and their background loops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from belfry import __version__
from belfry.adapters.clock import SystemClock
from belfry.adapters.notify import ChannelSenders
from belfry.adapters.store import open_store
from belfry.adapters.store.factory import schema_head
from belfry.adapters.store.peer_link import PostgresPeerLink
from belfry.core.protocol import HEARTBEAT_SECONDS, PROTOCOL_VERSION, Hello, WorkerCapacity
from belfry.core.records import SERVER_ACTOR, Fence
from belfry.ports.clock import Clock
from belfry.ports.store import Store
from belfry.server.embedded import EmbeddedLink
from belfry.server.secret_key import server_secret_box
from belfry.server.settings import Settings
from belfry.server.single_node import hold_sqlite_lock
from belfry.services.accounts import AccountService
from belfry.services.audit import AuditLog
from belfry.services.chains import ChainService
from belfry.services.database_time import DatabaseTime
from belfry.services.jobs import JobService
from belfry.services.leadership import LeaderElection
from belfry.services.login_throttle import LoginThrottle
from belfry.services.maintenance import MaintenanceService
from belfry.services.metrics import Metrics
from belfry.services.notifier import Notifier
from belfry.services.oidc_login import SingleSignOn, read_state_key
from belfry.services.retention import Pruner
from belfry.services.runs import RunService, WorkerIdentity
from belfry.services.scheduler import Scheduler
from belfry.services.signals import Signals, Topic
from belfry.services.tokens import TokenService
from belfry.services.workers import WorkerGone, WorkerService
from belfry.worker.agent import Agent
from belfry.worker.guardian import Guardian

__all__ = ["Node"]

log = logging.getLogger(__name__)

# Seconds between looks at the store for changes made on another server, when no signal
# came (servers sharing a database; the peer link's signals wake them at once).
SHARED_RECHECK = 5.0


@dataclass
class Node:
    settings: Settings
    clock: Clock
    store: Store
    runs: RunService
    jobs: JobService
    scheduler: Scheduler
    pruner: Pruner
    tokens: TokenService
    accounts: AccountService
    audit: AuditLog
    login_throttle: LoginThrottle
    workers: WorkerService
    agent: Agent | None
    embedded_name: str | None = None
    guardian: Guardian | None = None
    election: LeaderElection | None = None
    _leading: list[asyncio.Task[None]] = field(default_factory=list)
    first_admin_token: str | None = None
    first_admin_password: str | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _lock_fd: int | None = None
    sso: SingleSignOn | None = None  # OpenID Connect login, when ``oidc:`` is configured
    # What /metrics shows of this process (the services count into it).
    metrics: Metrics = field(default_factory=Metrics)
    # The migration this code expects the database at (/readyz compares).
    schema_head: str = ""
    # Decides and delivers alerts (set by ``open``).
    notifier: Notifier = field(init=False)
    # Maintenance windows (set by ``open``).
    maintenance: MaintenanceService = field(init=False)
    # Runs of the jobs that run after others (set by ``open``; the leader's).
    chains: ChainService = field(init=False)
    _senders: ChannelSenders | None = None

    @classmethod
    async def open(cls, settings: Settings) -> Node:
        secrets = server_secret_box(settings)  # seals jobs' secret env values
        url = settings.database_url
        lock_fd = None
        if url.startswith("sqlite:///"):
            database_file = Path(url.removeprefix("sqlite:///")).resolve()  # noqa: ASYNC240 - once, at start
            lock_fd = hold_sqlite_lock(database_file)
        store = await open_store(url)
        shared = not url.startswith("sqlite")
        # Servers sharing a database read its clock (corrected by the election's rounds).
        clock: Clock = DatabaseTime(SystemClock()) if shared else SystemClock()
        # Servers sharing a database signal their changes to each other (LISTEN/NOTIFY):
        # runs the leader made wake the long polls of every server, a job applied through
        # any server wakes the leader's scheduler. Their timers are a safety net, and the
        # link falls back to waking everything every second while its signals do not
        # arrive. Runs are made 1.5 s ahead, so that is still on time.
        signals = Signals(PostgresPeerLink(url) if shared else None)
        metrics = Metrics()
        runs = RunService(
            store,
            clock,
            recheck=SHARED_RECHECK if shared else None,
            secrets=secrets,
            metrics=metrics,
            signals=signals,
        )
        scheduler = Scheduler(
            store,
            clock,
            on_runs_created=partial(signals.announce, Topic.RUNS),
            on_runs_skipped=partial(signals.announce, Topic.ENDED),
            idle_recheck=SHARED_RECHECK if shared else 30.0,
            metrics=metrics,
        )
        signals.on(Topic.JOBS, scheduler.wake)
        jobs = JobService(
            store, clock, on_change=partial(signals.announce, Topic.JOBS), secrets=secrets
        )
        pruner = Pruner(store, clock, settings.retention, interval=settings.prune_interval)
        tokens = TokenService(store, clock)
        accounts = AccountService(store, clock)
        workers = WorkerService(store, clock, runs, version=__version__)
        agent = None
        guardian = None
        embedded_name = None
        if settings.embedded_worker:
            host = socket.gethostname()
            embedded_name = f"{host}/embedded"
            identity = WorkerIdentity(
                name=embedded_name, host=host, pools=tuple(settings.worker_pools)
            )
            link = EmbeddedLink(runs, identity, _drain_check(store, embedded_name))
            # Kills the runs' process trees should this server die without stopping them.
            guardian = Guardian()
            guardian.start()
            agent = Agent(link, link, host=host, slots=settings.worker_slots, guardian=guardian)
        node = cls(
            settings,
            clock,
            store,
            runs,
            jobs,
            scheduler,
            pruner,
            tokens,
            accounts,
            AuditLog(store, clock),
            LoginThrottle(clock),
            workers,
            agent,
            embedded_name=embedded_name,
            guardian=guardian,
            _lock_fd=lock_fd,
            metrics=metrics,
            schema_head=schema_head(),
        )
        node.maintenance = MaintenanceService(store, clock, on_change=node._work_changed)
        node.chains = ChainService(
            store,
            clock,
            on_runs_created=partial(signals.announce, Topic.RUNS),
            wakeup=runs.runs_ended,
        )
        node._senders = ChannelSenders(smtp=settings.smtp)
        node.notifier = Notifier(
            store,
            clock,
            jobs.channels,
            node._senders,
            settings.notifier,
            on_delivery=metrics.notification,
        )
        signals.on(Topic.ENDED, node.notifier.runs_ended)
        if settings.oidc is not None:
            node.sso = SingleSignOn(
                settings.oidc,
                redirect_uri=settings.oidc_redirect_uri,
                accounts=accounts,
                audit=node.audit,
                clock=clock,
                state_key=read_state_key(settings.secret_key_path),  # made by server_secret_box
            )
        if embedded_name is not None:
            # Said hello like any worker, listing no runs: what the previous server
            # process ran is marked lost (and retried where the job asks).
            await node._embedded_hello()
        await node.jobs.unreadable_secrets()  # logs secrets sealed under another key
        node.first_admin_token = await node._bootstrap_admin()
        node.first_admin_password = await node._bootstrap_admin_user()
        return node

    def _work_changed(self) -> None:
        """Maintenance began or ended: plan and hand out runs again now, on every server."""
        self.runs.signals.announce(Topic.JOBS)
        self.runs.signals.announce(Topic.RUNS)

    @property
    def name(self) -> str:
        """This server process, as ``belfry cluster`` shows it."""
        return f"{socket.gethostname()}:{self.settings.port}"

    async def _bootstrap_admin(self) -> str | None:
        """First start: create an admin token, print it once, keep it in a 0600 file."""
        if await self.tokens.any_exist():
            return None
        secret, _ = await self.tokens.create("first-admin", "admin")
        _write_private(self.settings.admin_token_file, secret)
        return secret

    async def _bootstrap_admin_user(self) -> str | None:
        """First start: a global admin ``admin`` with a random password, printed once and
        kept in a 0600 file beside the token (there is no default password)."""
        created = await self.accounts.ensure_first_admin()
        if created is None:
            return None
        _, password = created
        _write_private(self.settings.admin_token_file.with_name("admin-password"), password)
        await self.audit.record(SERVER_ACTOR, "user.create", target="admin", after={"admin": True})
        return password

    def start_background(self) -> None:
        if self.shared_database:
            # Several servers may share it: only the elected leader runs the leader's work.
            assert isinstance(self.clock, DatabaseTime)
            self.election = LeaderElection(
                self.store,
                self.clock,
                self.name,
                __version__,
                on_elected=self._lead,
                on_deposed=self._follow,
            )
            self._tasks.append(asyncio.create_task(self.election.run_forever(), name="election"))
            self._tasks.append(
                asyncio.create_task(self.runs.signals.run_forever(), name="peer-signals")
            )
        else:
            self._start_leading_tasks()
        # Every server watches for a stalled scheduler and sends due alerts.
        self._tasks.append(asyncio.create_task(self.notifier.run_forever(), name="delivery"))
        if self.agent is not None:
            self._tasks.append(asyncio.create_task(self.agent.run_forever(), name="worker"))
            self._tasks.append(asyncio.create_task(self._embedded_heartbeats(), name="beat"))

    def _start_leading_tasks(self) -> None:
        self._leading = [
            asyncio.create_task(self.scheduler.run_forever(), name="scheduler"),
            asyncio.create_task(self.pruner.run_forever(), name="pruner"),
            asyncio.create_task(self.workers.run_forever(), name="reaper"),
            asyncio.create_task(self.notifier.run_leader_forever(), name="alerts"),
            asyncio.create_task(self.chains.run_leader_forever(), name="chains"),
        ]

    async def _lead(self, fence: Fence) -> None:
        self.scheduler.fence = fence
        self._start_leading_tasks()

    async def _follow(self) -> None:
        tasks, self._leading = self._leading, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.scheduler.fence = None

    def begin_shutdown(self) -> None:
        """SIGTERM: end the workers' long polls, hand the leadership over now rather than
        when the HTTP server has finished with its requests, and give the embedded
        worker's runs that have not started back to the other workers."""
        self.runs.shut_down()
        if self.election is not None:
            self._tasks.append(asyncio.create_task(self.election.resign(), name="resign"))
        if self.agent is not None:
            self._tasks.append(asyncio.create_task(self._hand_back(), name="hand-back"))

    async def _hand_back(self) -> None:
        assert self.agent is not None and self.embedded_name is not None
        unstarted = await self.agent.hand_back()
        try:
            handed = await self.runs.hand_back(self.embedded_name, unstarted)
        except Exception:
            # Still claimed: on the next start the embedded worker's hello marks them lost.
            log.exception("could not hand back %d unstarted runs", len(unstarted))
            return
        if handed:
            log.info("handed back %d runs not started yet", handed)

    @property
    def shared_database(self) -> bool:
        return not self.settings.database_url.startswith("sqlite")

    async def _embedded_heartbeats(self) -> None:
        """The embedded worker lives in this process, but heartbeats like any other, so
        the cluster view and the reaper treat it alike."""
        assert self.embedded_name is not None and self.agent is not None
        while True:
            try:
                await self.workers.heartbeat(self.embedded_name, (), draining=False)
            except asyncio.CancelledError:
                raise
            except WorkerGone:
                # Declared lost (the database was out of reach for a while): its runs are
                # marked lost already, so stop them and join again.
                log.warning("the embedded worker was declared lost; rejoining")
                self.agent.kill(self.agent.running_ids)
                await self._embedded_hello()
            except Exception:
                log.exception("embedded worker heartbeat failed")
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def _embedded_hello(self) -> None:
        assert self.embedded_name is not None
        await self.workers.hello(
            Hello(
                name=self.embedded_name,
                host=socket.gethostname(),
                pools=list(self.settings.worker_pools),
                capacity=WorkerCapacity(slots=self.settings.worker_slots),
                version=__version__,
                protocol=PROTOCOL_VERSION,
            ),
            None,
        )

    async def close(self) -> None:
        if self.election is not None:
            await self.election.resign()
        await self._follow()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.guardian is not None:
            self.guardian.stop()  # the agent's runs were stopped with its task
        if self._senders is not None:
            await self._senders.aclose()
        await self.runs.signals.close()
        await self.store.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _write_private(path: Path, secret: str) -> None:
    """A secret in a file only this server's user can read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secret + "\n")


def _drain_check(store: Store, name: str) -> Callable[[], Awaitable[bool]]:
    async def draining() -> bool:
        worker = await store.get_worker(name)
        return worker is not None and worker.state == "draining"

    return draining
