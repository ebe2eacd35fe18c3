"""``GET /metrics``: Prometheus' scrape endpoint (``services.metrics`` says what it holds).

Authenticated like the API unless the ``metrics_public`` setting says otherwise: a
scraper sends a bearer token (Prometheus' ``authorization`` setting). The per-job series
name every job of every group, so the token must be allowed to read every group (a viewer
on ``*``, or a global admin); a worker token, or a viewer of some groups only, is refused.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status

from belfry.server.dependencies import NodeDep, authenticate
from belfry.server.node import Node
from belfry.services.metrics import CONTENT_TYPE, LeaderView

__all__ = ["metrics_router"]


def metrics_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/metrics")
    async def metrics(node: NodeDep, request: Request) -> Response:
        if not node.settings.metrics_public:
            caller = await authenticate(node, request)
            if caller.readable_groups() is not None:
                raise HTTPException(
                    status.HTTP_403_FORBIDDEN,
                    f"{caller.name} may not read every group: /metrics names every job "
                    "(use a token of a viewer on '*', or set metrics_public)",
                )
        body = await node.metrics.exposition(node.store, node.clock.now(), await _leader(node))
        return Response(body, media_type=CONTENT_TYPE)

    return router


async def _leader(node: Node) -> LeaderView:
    if not node.shared_database:  # SQLite: this server is the only one, and leads
        return LeaderView(node=node.name, epoch=None, leading=True)
    lease = await node.store.read_leadership(node.clock.now())
    return LeaderView(
        node=lease.holder if lease is not None and lease.valid else None,
        epoch=lease.epoch if lease is not None else None,
        leading=node.election is not None and node.election.leading,
    )
