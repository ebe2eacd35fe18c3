"""The ``belfry worker`` process: join the servers, run what they hand out, drain on
SIGTERM (finish the runs in flight up to a grace period, then kill and report them)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from belfry import __version__
from belfry.core.protocol import PROTOCOL_VERSION, Hello, WorkerCapacity
from belfry.worker.agent import Agent
from belfry.worker.child_watcher import use_pidfd_child_watcher
from belfry.worker.guardian import Guardian
from belfry.worker.http_link import FatalWorkerError, HttpLink

__all__ = ["WorkerConfig", "run_worker"]

log = logging.getLogger("belfry.worker")


@dataclass(frozen=True)
class WorkerConfig:
    servers: list[str]
    token: str
    pools: list[str]
    tags: dict[str, str] = field(default_factory=dict)
    slots: int | None = None
    cpu: float | None = None
    memory_mb: int | None = None
    name: str | None = None
    drain_grace: float = 60.0
    # Verifies the servers' certificates (None: the system's trust store); built by the CLI,
    # where a bad --ca file is a one-line error.
    tls: ssl.SSLContext | None = None


async def run_worker(config: WorkerConfig) -> None:
    """Run until SIGTERM/SIGINT (then drain) or until the servers refuse this worker
    (FatalWorkerError)."""
    use_pidfd_child_watcher()  # a thread per child otherwise (Python 3.11's default)
    host = socket.gethostname()
    name = config.name or f"{host}:{os.getpid()}"
    agent: Agent | None = None

    def running() -> list[int]:
        return agent.running_ids if agent else []

    def draining() -> bool:
        return agent.draining if agent else False

    def kill(run_ids: list[int]) -> None:
        if agent is not None:
            agent.kill(run_ids)

    hello = Hello(
        name=name,
        host=host,
        pools=config.pools,
        tags=config.tags,
        capacity=WorkerCapacity(slots=config.slots, cpu=config.cpu, memory_mb=config.memory_mb),
        version=__version__,
        protocol=PROTOCOL_VERSION,
    )
    for url in config.servers:
        parts = urlsplit(url)
        if parts.scheme == "http" and parts.hostname not in {"127.0.0.1", "::1", "localhost"}:
            log.warning("%s is plain HTTP: the worker token crosses the network unencrypted", url)
    link = HttpLink(
        config.servers,
        config.token,
        hello,
        running=running,
        draining=draining,
        kill=kill,
        tls=config.tls,
    )
    # Kills the runs' process trees if this process dies without stopping them.
    guardian = Guardian()
    guardian.start()
    agent = Agent(
        link,
        link,
        host=host,
        slots=config.slots,
        cpu=config.cpu,
        memory_mb=config.memory_mb,
        guardian=guardian,
    )
    stop = asyncio.Event()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info("stopping: draining (again to kill the runs now)")
            stop.set()
        else:
            log.warning("killing %d runs now", agent.running if agent else 0)
            if agent is not None:
                agent.kill(agent.running_ids)

    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, on_signal)
    try:
        # join() retries until a server answers, which may be never (an untrusted
        # certificate, a wrong URL): a SIGTERM meanwhile must still stop the worker.
        joining = asyncio.create_task(link.join(), name="join")
        waiting = asyncio.create_task(stop.wait())
        await asyncio.wait([joining, waiting], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if not joining.done():
            joining.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await joining
            log.info("stopped before joining a server")
            return
        joining.result()  # FatalWorkerError: the servers refuse this worker
        tasks = [
            asyncio.create_task(agent.run_forever(), name="agent"),
            asyncio.create_task(link.send_reports_forever(), name="reports"),
            asyncio.create_task(link.heartbeat_forever(), name="heartbeat"),
            asyncio.create_task(link.watch_lease_forever(), name="lease"),
        ]
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopping and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        log.info("draining %d runs (grace %gs)", agent.running, config.drain_grace)
        drain = asyncio.create_task(agent.drain(config.drain_grace))
        link.beat_soon()
        await drain
        if not await link.flush(10.0):
            log.warning("some reports could not be delivered before exiting")
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    except FatalWorkerError:
        raise
    finally:
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(number)
        await link.close()
        guardian.stop()
