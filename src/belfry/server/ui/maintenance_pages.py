"""Maintenance in the web UI: the windows in force, and on/off for those who may.

The same checked and audited actions as ``belfry maintenance`` and the API
(``server.operations.start_maintenance`` / ``end_maintenance``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from belfry.core.maintenance import EVERYTHING
from belfry.core.names import NAME_RULE, is_valid_name
from belfry.server.dependencies import NodeDep, address_of
from belfry.server.operations import end_maintenance, start_maintenance
from belfry.server.ui.rendering import page
from belfry.server.ui.session import UiSessionDep

__all__ = ["maintenance_router"]

_NOTE_LENGTH = 1000


def maintenance_router() -> APIRouter:
    ui = APIRouter(include_in_schema=False)

    @ui.get("/maintenance", response_class=HTMLResponse)
    async def maintenance(
        node: NodeDep,
        session: UiSessionDep,
        request: Request,
        error: str = "",
    ) -> HTMLResponse:
        windows = await node.maintenance.windows()
        return page(
            request,
            "maintenance.html",
            session,
            windows=windows,
            everything=EVERYTHING,
            error=error,
        )

    @ui.post("/maintenance", response_model=None)
    async def switch(
        node: NodeDep,
        session: UiSessionDep,
        request: Request,
        action: Annotated[str, Form(pattern="^(on|off)$")],
        scope: Annotated[str, Form(max_length=100)] = "",
        note: Annotated[str, Form(max_length=_NOTE_LENGTH)] = "",
    ) -> Response:
        """Turn maintenance on or off for everything (no group given) or one group."""
        target = scope.strip() or EVERYTHING
        address = address_of(request)
        try:
            if target != EVERYTHING and not is_valid_name(target):
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, f"group: {NAME_RULE}")
            if action == "on":
                await start_maintenance(
                    node, session.principal, address, target, note.strip() or None
                )
            else:
                await end_maintenance(node, session.principal, address, target)
        except HTTPException as refusal:
            return page(
                request,
                "maintenance.html",
                session,
                status_code=refusal.status_code,
                windows=await node.maintenance.windows(),
                everything=EVERYTHING,
                error=str(refusal.detail),
                # A refused start: its form again, open, next to the message.
                starting=action == "on",
            )
        return RedirectResponse("/maintenance", status_code=status.HTTP_303_SEE_OTHER)

    return ui
