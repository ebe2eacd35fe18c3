"""The UI's operations and administration pages, one router for ``ui.app`` to mount:

- ``/workers``, ``/cluster``: the fleet (``admin_cluster``);
- ``/audit``: the audit log (``admin_audit``);
- ``/calendars``, ``/calendars/{name}`` (``admin_calendars``);
- ``/channels``, ``/channels/{name}``, its test, ``/deliveries`` (``admin_channels``);
- ``/tokens``: the user's API tokens, and worker tokens for global admins (``token_pages``);
- ``/apply``, ``/export.yaml``: jobs as code (``apply_pages``).
"""

from __future__ import annotations

from fastapi import APIRouter

from belfry.server.ui.admin_audit import audit_router
from belfry.server.ui.admin_calendars import calendar_router
from belfry.server.ui.admin_channels import channel_router
from belfry.server.ui.admin_cluster import cluster_router
from belfry.server.ui.apply_pages import apply_router
from belfry.server.ui.token_pages import token_router

__all__ = ["admin_router"]


def admin_router() -> APIRouter:
    ui = APIRouter(include_in_schema=False)
    for router in (
        cluster_router(),
        audit_router(),
        calendar_router(),
        channel_router(),
        token_router(),
        apply_router(),
    ):
        ui.include_router(router)
    return ui
