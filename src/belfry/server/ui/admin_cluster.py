"""The fleet: workers (``/workers``) and server nodes with their leader (``/cluster``).

Both read the same overview as ``GET /api/v1/cluster`` (``operations.cluster_overview``)
and refresh themselves every few seconds with htmx; without JavaScript, reload.
"""

from __future__ import annotations

from collections import Counter

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from belfry.server.dependencies import NodeDep
from belfry.server.health import OK
from belfry.server.operations import cluster_overview
from belfry.server.ui.admin_format import capacity, clock_offset
from belfry.server.ui.rendering import page
from belfry.server.ui.session import UiSessionDep
from belfry.services.database_time import MAX_CLOCK_OFFSET

__all__ = ["cluster_router"]


def cluster_router() -> APIRouter:
    ui = APIRouter(include_in_schema=False)

    @ui.get("/workers", response_class=HTMLResponse)
    async def workers(node: NodeDep, session: UiSessionDep, request: Request) -> HTMLResponse:
        overview = await cluster_overview(node)
        states = Counter(worker.state for worker in overview.workers)
        return page(
            request,
            "workers.html",
            session,
            workers=overview.workers,
            states=states,
            capacity=capacity,
        )

    @ui.get("/cluster", response_class=HTMLResponse)
    async def cluster(node: NodeDep, session: UiSessionDep, request: Request) -> HTMLResponse:
        overview = await cluster_overview(node)
        health = overview.health
        facts = [
            ("Database", health.database),
            ("Schema migrations", health.migrations),
            ("Clock", health.clock),
        ]
        return page(
            request,
            "cluster.html",
            session,
            nodes=overview.nodes,
            health=health,
            facts=facts,
            ok=OK,
            shared=node.shared_database,
            workers=len(overview.workers),
            clock_offset=clock_offset,
            max_offset=MAX_CLOCK_OFFSET,
        )

    return ui
