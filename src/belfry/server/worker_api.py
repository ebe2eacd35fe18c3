"""The worker endpoints (``/api/v1/workers/…``): what ``belfry worker`` agents call.

Messages are belfry.core.protocol's. A worker token may only serve its pools; an admin
token may serve any. Errors a worker must act on: 426 (another protocol version: upgrade),
410 (declared lost: kill the runs, say hello again), 404 (unknown: say hello).
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from belfry import __version__
from belfry.core.permissions import Principal
from belfry.core.protocol import (
    ClaimReply,
    ClaimRequest,
    Heartbeat,
    HeartbeatReply,
    Hello,
    Reports,
    Welcome,
)
from belfry.server.dependencies import NodeDep, WorkerCallerDep
from belfry.server.schemas import ERROR_RESPONSES, ErrorOut
from belfry.services.runs import FreeCapacity
from belfry.services.workers import ProtocolMismatch, UnknownWorker, WorkerGone

__all__ = ["worker_router"]


def _errors(error: Exception) -> HTTPException:
    if isinstance(error, WorkerGone):
        return HTTPException(status.HTTP_410_GONE, str(error))
    if isinstance(error, UnknownWorker):
        return HTTPException(status.HTTP_404_NOT_FOUND, str(error))
    if isinstance(error, PermissionError):
        return HTTPException(status.HTTP_403_FORBIDDEN, str(error))
    raise error


def worker_router() -> APIRouter:
    api = APIRouter(
        prefix="/api/v1/workers",
        tags=["workers"],
        responses={
            **ERROR_RESPONSES,
            410: {"model": ErrorOut, "description": "The worker was declared lost: hello again."},
            426: {"model": ErrorOut, "description": "Another protocol version: upgrade."},
        },
    )

    @api.post("/hello", response_model=Welcome)
    async def hello(node: NodeDep, caller: WorkerCallerDep, body: Hello) -> Welcome:
        try:
            result = await node.workers.hello(body, _pools(caller))
        except ProtocolMismatch as error:
            raise HTTPException(status.HTTP_426_UPGRADE_REQUIRED, str(error)) from None
        except PermissionError as error:
            raise HTTPException(status.HTTP_403_FORBIDDEN, str(error)) from None
        return Welcome(name=result.worker.name, server_version=__version__, kills=result.kills)

    @api.post("/{name}/claim", response_model=ClaimReply)
    async def claim(
        node: NodeDep, caller: WorkerCallerDep, name: str, body: ClaimRequest
    ) -> ClaimReply:
        free = FreeCapacity(body.free.slots, body.free.cpu, body.free.memory_mb)
        try:
            assignment = await node.workers.claim(name, free, body.wait, _pools(caller))
        except (WorkerGone, UnknownWorker, PermissionError) as error:
            raise _errors(error) from None
        return ClaimReply(
            orders=assignment.orders, kills=assignment.kills, server_time=assignment.issued_at
        )

    @api.post("/{name}/heartbeat", response_model=HeartbeatReply)
    async def heartbeat(
        node: NodeDep, caller: WorkerCallerDep, name: str, body: Heartbeat
    ) -> HeartbeatReply:
        try:
            kills = await node.workers.heartbeat(name, body.running, body.draining, _pools(caller))
        except (WorkerGone, UnknownWorker, PermissionError) as error:
            raise _errors(error) from None
        return HeartbeatReply(kills=kills)

    @api.post("/{name}/reports", status_code=status.HTTP_204_NO_CONTENT)
    async def reports(node: NodeDep, caller: WorkerCallerDep, name: str, body: Reports) -> None:
        try:
            await node.workers.report(name, body, _pools(caller))
        except (WorkerGone, UnknownWorker, PermissionError) as error:
            raise _errors(error) from None

    return api


def _pools(caller: Principal) -> list[str] | None:
    """The pools a worker token may serve; None for a global admin (any)."""
    return None if caller.worker_pools is None else list(caller.worker_pools)
