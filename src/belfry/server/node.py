"""One ``belfry server`` process: the store, the services and their background loops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from belfry.adapters.clock import SystemClock
from belfry.adapters.store import open_store
from belfry.ports.store import Store
from belfry.server.embedded import EmbeddedLink
from belfry.server.settings import Settings
from belfry.server.single_node import hold_sqlite_lock
from belfry.services.jobs import JobService
from belfry.services.retention import Pruner
from belfry.services.runs import RunService, WorkerIdentity
from belfry.services.scheduler import Scheduler
from belfry.services.tokens import TokenService
from belfry.worker.agent import Agent

__all__ = ["Node"]

log = logging.getLogger(__name__)


@dataclass
class Node:
    settings: Settings
    store: Store
    runs: RunService
    jobs: JobService
    scheduler: Scheduler
    pruner: Pruner
    tokens: TokenService
    agent: Agent | None
    first_admin_token: str | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _lock_fd: int | None = None

    @classmethod
    async def open(cls, settings: Settings) -> Node:
        url = settings.database_url
        lock_fd = None
        if url.startswith("sqlite:///"):
            database_file = Path(url.removeprefix("sqlite:///")).resolve()  # noqa: ASYNC240 - once, at start
            lock_fd = hold_sqlite_lock(database_file)
        store = await open_store(url)
        clock = SystemClock()
        runs = RunService(store, clock)
        scheduler = Scheduler(store, clock, on_runs_created=runs.new_work.ring)
        jobs = JobService(store, clock, on_change=scheduler.wake)
        pruner = Pruner(store, clock, settings.retention, interval=settings.prune_interval)
        tokens = TokenService(store, clock)
        agent = None
        if settings.embedded_worker:
            host = socket.gethostname()
            identity = WorkerIdentity(name=f"{host}/embedded", host=host)
            lost = await runs.recover_lost(identity, "server restarted while the run was active")
            if lost:
                log.warning("marked %d runs of the previous server process as lost", lost)
            link = EmbeddedLink(runs, identity)
            agent = Agent(link, link, host=host, slots=settings.worker_slots)
        node = cls(settings, store, runs, jobs, scheduler, pruner, tokens, agent, _lock_fd=lock_fd)
        node.first_admin_token = await node._bootstrap_admin()
        return node

    async def _bootstrap_admin(self) -> str | None:
        """First start: create an admin token, print it once, keep it in a 0600 file."""
        if await self.tokens.any_exist():
            return None
        secret, _ = await self.tokens.create("first-admin", "admin")
        path = self.settings.admin_token_file
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secret + "\n")
        return secret

    def start_background(self) -> None:
        self._tasks.append(asyncio.create_task(self.scheduler.run_forever(), name="scheduler"))
        self._tasks.append(asyncio.create_task(self.pruner.run_forever(), name="pruner"))
        if self.agent is not None:
            self._tasks.append(asyncio.create_task(self.agent.run_forever(), name="worker"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.store.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
