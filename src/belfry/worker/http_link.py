"""``belfry worker``'s link to the servers: the worker protocol (belfry.core.protocol) over
HTTP, with failover between server replicas, buffered reports, heartbeats and the lease.

* Every call goes to the current server; a server that cannot be reached (or answers 5xx)
  makes the link try the next one, so any replica will do.
* Reports (started, output, finished) are queued and sent in batches by one sender, in
  order, retried until a server takes them: a server outage never stops a run, and a batch
  sent twice is applied once (the server side is idempotent).
* A heartbeat every few seconds carries the runs in flight and brings back kills.
* The lease: when no server has answered for ``lease_seconds``, the worker kills its runs
  itself, because by then the servers are about to declare it lost and may retry them;
  a run must never have a twin. Back in touch, it says hello again.
* TLS: server certificates are always verified, against the system's trust store or the
  CA bundle given with ``belfry worker --ca``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from belfry.core.execution import Assignment, Outcome
from belfry.core.protocol import (
    LEASE_SECONDS,
    MAX_CLAIM_WAIT,
    ChunkReport,
    ClaimReply,
    ClaimRequest,
    FinishedReport,
    Heartbeat,
    HeartbeatReply,
    Hello,
    Reports,
    StartedReport,
    Welcome,
    WorkerCapacity,
)
from belfry.core.records import OutputChunk

__all__ = [
    "FatalWorkerError",
    "HttpLink",
    "RequestTooLarge",
    "ServersUnreachable",
    "WorkerGone",
    "tls_context",
]

log = logging.getLogger(__name__)

# Reports sent in one request, at most: a burst of output goes out in a few requests.
_BATCH = 500
# Output characters in one request, at most: far under the servers' default body limit
# (10 MiB) even when every character is JSON-escaped to six bytes.
_BATCH_CHARS = 1024 * 1024


def tls_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """Verifies servers' certificates and host names: against ``ca_file`` (a PEM bundle)
    alone, or else the system's trust store. OSError if the file cannot be read,
    ssl.SSLError if it holds no certificate."""
    if ca_file is None:
        return ssl.create_default_context()
    # Read first: a missing file then fails with its own OSError, not a generic SSL one.
    ca_file.read_bytes()
    return ssl.create_default_context(cafile=str(ca_file))


class FatalWorkerError(Exception):
    """The servers refuse this worker for good (bad token, pools, another protocol)."""


class ServersUnreachable(ConnectionError):
    """No server answered."""


class RequestTooLarge(FatalWorkerError):
    """A server refused a request's body as too large (HTTP 413)."""


class WorkerGone(Exception):
    """The servers declared this worker lost: kill the runs, say hello again."""


class HttpLink:
    """A RunSource and a RunReporter over HTTP, for one worker."""

    def __init__(
        self,
        servers: Sequence[str],
        token: str,
        hello: Hello,
        *,
        running: Callable[[], list[int]],
        draining: Callable[[], bool],
        kill: Callable[[list[int]], None],
        timeout: float = 10.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if not servers:
            raise ValueError("give at least one server URL")
        self._servers = [server.rstrip("/") for server in servers]
        self._current = 0
        self._hello = hello
        self._running = running
        self._draining = draining
        self._kill = kill
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
            # Never unverified: the system's trust store unless a CA bundle is given (httpx
            # would otherwise trust certifi's bundle, not the host's own CAs).
            verify=tls or tls_context(),
        )
        self._name = hello.name
        self.heartbeat_seconds = 3.0
        self.lease_seconds = LEASE_SECONDS
        self._last_contact = time.monotonic()
        self._joined = asyncio.Event()
        self._lease_expired = False
        self._queue: list[StartedReport | ChunkReport | FinishedReport] = []
        self._queued = asyncio.Event()
        self._flushed = asyncio.Condition()
        self._sent = 0
        self._enqueued = 0
        self._beat = asyncio.Event()

    @property
    def server(self) -> str:
        return self._servers[self._current]

    async def close(self) -> None:
        await self._http.aclose()

    # -- calls, with failover ---------------------------------------------------------------
    async def _call(self, path: str, body: Any, *, timeout: float | None = None) -> Any:
        """POST ``body`` to the current server, trying each server once if need be.

        Raises WorkerGone (410), RequestTooLarge (413), FatalWorkerError (401/403/426 and
        other 4xx), ServersUnreachable."""
        errors = []
        for _ in range(len(self._servers)):
            url = self.server + path
            try:
                response = await self._http.post(
                    url,
                    content=body.model_dump_json(),
                    headers={"Content-Type": "application/json"},
                    timeout=timeout or self._timeout,
                )
            except httpx.HTTPError as error:
                errors.append(f"{self.server}: {_describe(error)}")
                self._current = (self._current + 1) % len(self._servers)
                continue
            if response.status_code >= 500:
                errors.append(f"{self.server}: HTTP {response.status_code}")
                self._current = (self._current + 1) % len(self._servers)
                continue
            self._last_contact = time.monotonic()
            detail = _detail(response)
            if response.status_code == 410:
                raise WorkerGone(detail)
            if response.status_code == 404 and path.startswith(f"/api/v1/workers/{self._name}"):
                raise WorkerGone(detail)  # the servers forgot us (a new database?): rejoin
            if response.status_code == 413:
                raise RequestTooLarge(f"{self.server}: HTTP 413: {detail}")
            if response.status_code in (401, 403, 426):
                raise FatalWorkerError(f"{self.server} refused this worker: {detail}")
            if response.status_code >= 400:
                raise FatalWorkerError(f"{self.server}: HTTP {response.status_code}: {detail}")
            return response.json() if response.content else None
        raise ServersUnreachable("; ".join(errors))

    # -- joining ----------------------------------------------------------------------------
    async def join(self) -> None:
        """Say hello until a server answers (FatalWorkerError if one refuses us)."""
        delay = 0.5
        while True:
            hello = self._hello.model_copy(update={"running": self._running()})
            try:
                welcome = Welcome.model_validate(await self._call("/api/v1/workers/hello", hello))
            except ServersUnreachable as error:
                log.warning("no server answered (%s); retrying in %.1fs", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.heartbeat_seconds = welcome.heartbeat_seconds
            self.lease_seconds = welcome.lease_seconds
            self._lease_expired = False
            if welcome.kills:
                self._kill(welcome.kills)
            self._joined.set()
            log.info("joined %s as %s", self.server, welcome.name)
            return

    async def _rejoin(self, why: str) -> None:
        log.warning("%s; killing %d runs and joining again", why, len(self._running()))
        self._joined.clear()
        self._kill(self._running())
        await self.join()

    # -- RunSource --------------------------------------------------------------------------
    async def claim(self, free: WorkerCapacity, wait: float) -> Assignment:
        await self._joined.wait()
        wait = min(wait, MAX_CLAIM_WAIT)
        request = ClaimRequest(free=free, wait=wait)
        try:
            data = await self._call(
                f"/api/v1/workers/{self._name}/claim", request, timeout=wait + self._timeout
            )
        except WorkerGone as error:
            await self._rejoin(str(error))
            return Assignment()
        reply = ClaimReply.model_validate(data)
        return Assignment(
            orders=list(reply.orders), kills=list(reply.kills), issued_at=reply.server_time
        )

    # -- RunReporter ------------------------------------------------------------------------
    async def started(self, run_id: int, pid: int, host: str) -> None:
        self._enqueue([StartedReport(run_id=run_id, pid=pid, host=host)])

    async def output(self, chunks: list[OutputChunk]) -> None:
        self._enqueue(
            [
                ChunkReport(
                    run_id=chunk.run_id,
                    seq=chunk.seq,
                    stream=chunk.stream,
                    data=chunk.data,
                    at=chunk.at,
                )
                for chunk in chunks
            ]
        )

    async def finished(self, run_id: int, outcome: Outcome) -> None:
        self._enqueue(
            [
                FinishedReport(
                    run_id=run_id,
                    state=outcome.state.value,
                    exit_code=outcome.exit_code,
                    reason=outcome.reason,
                )
            ]
        )

    def _enqueue(self, reports: list[StartedReport | ChunkReport | FinishedReport]) -> None:
        self._queue.extend(reports)
        self._enqueued += len(reports)
        self._queued.set()

    async def flush(self, timeout: float) -> bool:
        """Wait until every report queued so far is sent (False if ``timeout`` passes)."""
        target = self._enqueued
        async with self._flushed:
            try:
                await asyncio.wait_for(
                    self._flushed.wait_for(lambda: self._sent >= target), timeout
                )
            except TimeoutError:
                return False
        return True

    async def send_reports_forever(self) -> None:
        delay = 0.2
        # Reports per request; halved while a server refuses a batch as too large (its
        # max_request_bytes may be lower than this worker's budget assumes).
        limit = _BATCH
        while True:
            if not self._queue:
                self._queued.clear()
                await self._queued.wait()
            await self._joined.wait()
            batch = _take_batch(self._queue, limit)
            reports = Reports(
                started=[r for r in batch if isinstance(r, StartedReport)],
                output=[r for r in batch if isinstance(r, ChunkReport)],
                finished=[r for r in batch if isinstance(r, FinishedReport)],
            )
            try:
                await self._call(f"/api/v1/workers/{self._name}/reports", reports)
            except ServersUnreachable as error:
                log.warning("reports not delivered (%s); retrying in %.1fs", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            except RequestTooLarge as error:
                if len(batch) > 1:
                    limit = max(1, len(batch) // 2)
                    log.warning("%s; retrying with at most %d reports per request", error, limit)
                    continue
                # One report alone is too large for the server: keep the rest flowing.
                log.error("dropping a report the server will not take: %s", error)
            except WorkerGone as error:
                # Declared lost: its runs are lost already, so what they report is moot.
                log.warning("dropping %d reports: %s", len(batch), error)
                await self._rejoin(str(error))
            else:
                limit = _BATCH
            delay = 0.2
            del self._queue[: len(batch)]
            async with self._flushed:
                self._sent += len(batch)
                self._flushed.notify_all()

    # -- heartbeats and the lease -----------------------------------------------------------
    def beat_soon(self) -> None:
        """Send a heartbeat now (the worker started draining: let the servers know)."""
        self._beat.set()

    async def heartbeat_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beat.wait(), self.heartbeat_seconds)
            self._beat.clear()
            await self._joined.wait()
            beat = Heartbeat(running=self._running(), draining=self._draining())
            try:
                # A replica that hangs must not eat the lease: give it a heartbeat's time,
                # then try the next one (a 10 s timeout against a 10 s lease never would).
                data = await self._call(
                    f"/api/v1/workers/{self._name}/heartbeat",
                    beat,
                    timeout=min(self._timeout, self.heartbeat_seconds),
                )
            except ServersUnreachable as error:
                log.warning("heartbeat: %s", error)
                continue
            except WorkerGone as error:
                await self._rejoin(str(error))
                continue
            kills = HeartbeatReply.model_validate(data).kills
            if kills:
                self._kill(kills)

    async def watch_lease_forever(self) -> None:
        """Kill the runs when no server has answered for the lease."""
        while True:
            await asyncio.sleep(0.5)
            silent = time.monotonic() - self._last_contact
            if silent > self.lease_seconds and not self._lease_expired:
                self._lease_expired = True
                running = self._running()
                log.error(
                    "no server for %.0fs (lease %.0fs): killing %d runs so none has a twin",
                    silent,
                    self.lease_seconds,
                    len(running),
                )
                self._kill(running)
            elif silent <= self.lease_seconds and self._lease_expired:
                self._lease_expired = False
                with contextlib.suppress(ServersUnreachable):
                    await self._rejoin("back in touch after the lease expired")


def _take_batch(
    queue: list[StartedReport | ChunkReport | FinishedReport], limit: int
) -> list[StartedReport | ChunkReport | FinishedReport]:
    """The next reports to send: at most ``limit`` of them and ``_BATCH_CHARS`` of output
    (always at least one)."""
    chars = 0
    for index, report in enumerate(queue[:limit]):
        if isinstance(report, ChunkReport):
            chars += len(report.data)
            if chars > _BATCH_CHARS and index > 0:
                return queue[:index]
    return queue[:limit]


def _describe(error: httpx.HTTPError) -> str:
    """Why a request got no answer, in words; an untrusted certificate says what to do."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            if "mismatch" in str(cause.verify_message).lower():
                return (
                    f"TLS certificate refused ({cause.verify_message}): the server URL must "
                    "name a host the certificate is for"
                )
            return (
                f"TLS certificate not trusted ({cause.verify_message}): give the CA that "
                "signed it with --ca FILE"
            )
        cause = cause.__cause__ or cause.__context__
    return f"{type(error).__name__}: {error}".strip()


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return response.text[:200] or f"HTTP {response.status_code}"
    return str(detail)
