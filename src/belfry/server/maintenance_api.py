"""The maintenance API: windows over everything or a group, and worker drains.

Everything (``/maintenance``) needs a global admin, a group (``/maintenance/{group}``) an
admin of the group; anyone signed in may see the windows in force. Every change is
audited (``belfry.server.operations``).
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field

from belfry.core.maintenance import EVERYTHING, MaintenanceWindow
from belfry.core.names import is_valid_name
from belfry.core.records import WorkerRecord
from belfry.core.states import ACTIVE_STATES
from belfry.server.dependencies import NodeDep, UserDep, address_of
from belfry.server.node import Node
from belfry.server.operations import (
    end_maintenance,
    set_worker_drain,
    start_maintenance,
)
from belfry.server.schemas import ERROR_RESPONSES, RunOut, WorkerOut

__all__ = ["MaintenanceOut", "MaintenanceRequest", "maintenance_router"]


class MaintenanceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=1000)


class MaintenanceOut(BaseModel):
    scope: str = Field(description="'*' (everything) or a group.")
    note: str | None
    started_at: datetime
    started_by: str

    @classmethod
    def of(cls, window: MaintenanceWindow) -> MaintenanceOut:
        return cls(
            scope=window.scope,
            note=window.note,
            started_at=window.started_at,
            started_by=window.started_by,
        )


class MaintenanceEndedOut(BaseModel):
    ended: MaintenanceOut
    deferred_runs: list[RunOut] = Field(
        description="One run per job with on_maintenance: defer that missed an occurrence."
    )


def _group(group: str) -> str:
    if not is_valid_name(group):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, f"group: invalid name {group!r}")
    return group


def maintenance_router() -> APIRouter:
    api = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)

    @api.get("/maintenance", response_model=list[MaintenanceOut])
    async def list_windows(node: NodeDep, caller: UserDep) -> list[MaintenanceOut]:
        """The maintenance windows in force ('*' first)."""
        return [MaintenanceOut.of(window) for window in await node.maintenance.windows()]

    @api.put("/maintenance", response_model=MaintenanceOut)
    async def start_everything(
        node: NodeDep, caller: UserDep, request: Request, body: MaintenanceRequest | None = None
    ) -> MaintenanceOut:
        note = body.note if body else None
        window = await start_maintenance(node, caller, address_of(request), EVERYTHING, note)
        return MaintenanceOut.of(window)

    @api.put("/maintenance/{group}", response_model=MaintenanceOut)
    async def start_group(
        node: NodeDep,
        caller: UserDep,
        request: Request,
        group: str,
        body: MaintenanceRequest | None = None,
    ) -> MaintenanceOut:
        note = body.note if body else None
        window = await start_maintenance(node, caller, address_of(request), _group(group), note)
        return MaintenanceOut.of(window)

    @api.delete("/maintenance", response_model=MaintenanceEndedOut)
    async def end_everything(
        node: NodeDep, caller: UserDep, request: Request
    ) -> MaintenanceEndedOut:
        ended = await end_maintenance(node, caller, address_of(request), EVERYTHING)
        return MaintenanceEndedOut(
            ended=MaintenanceOut.of(ended.window),
            deferred_runs=[RunOut.of(run) for run in ended.runs],
        )

    @api.delete("/maintenance/{group}", response_model=MaintenanceEndedOut)
    async def end_group(
        node: NodeDep, caller: UserDep, request: Request, group: str
    ) -> MaintenanceEndedOut:
        ended = await end_maintenance(node, caller, address_of(request), _group(group))
        return MaintenanceEndedOut(
            ended=MaintenanceOut.of(ended.window),
            deferred_runs=[RunOut.of(run) for run in ended.runs],
        )

    # Worker names hold a slash (the embedded worker is HOST/embedded): a path parameter.
    @api.post("/workers/{name:path}/drain", response_model=WorkerOut)
    async def drain(node: NodeDep, caller: UserDep, request: Request, name: str) -> WorkerOut:
        """The worker finishes its runs and takes nothing new until undrained."""
        worker = await set_worker_drain(node, caller, address_of(request), name, True)
        return await _worker_out(node, worker)

    @api.post("/workers/{name:path}/undrain", response_model=WorkerOut)
    async def undrain(node: NodeDep, caller: UserDep, request: Request, name: str) -> WorkerOut:
        worker = await set_worker_drain(node, caller, address_of(request), name, False)
        return await _worker_out(node, worker)

    return api


async def _worker_out(node: Node, worker: WorkerRecord) -> WorkerOut:
    running = await node.store.runs_in_states(sorted(ACTIVE_STATES), worker=worker.name)
    return WorkerOut.of(worker, len(running))
