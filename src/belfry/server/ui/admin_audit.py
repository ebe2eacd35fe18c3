"""The audit log (``/audit``): who changed or did what, from where, newest first.

The entries are those ``GET /api/v1/audit`` gives the same user (``AuditLog.query``):
everything for global admins, only entries about the groups they read for everyone else.
Filters by actor, action (``job`` matches ``job.create`` too) and group; paged backwards
by entry id, so new entries never shift a page being read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from belfry.core.records import AuditRecord
from belfry.server.dependencies import NodeDep
from belfry.server.ui.rendering import page
from belfry.server.ui.session import UiSessionDep

__all__ = ["AUDIT_PAGE_SIZE", "audit_router"]

AUDIT_PAGE_SIZE = 50
# Offered as the action filter's suggestions (any prefix of an action works).
_ACTIONS = (
    "job",
    "job.create",
    "job.update",
    "job.delete",
    "job.run",
    "job.pause",
    "job.resume",
    "run.kill",
    "calendar",
    "channel",
    "group",
    "grant",
    "user",
    "token",
    "login",
)


@dataclass(frozen=True)
class AuditRow:
    record: AuditRecord
    before: str | None
    after: str | None


def _pretty(value: object) -> str | None:
    if value is None:
        return None
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def audit_router() -> APIRouter:
    ui = APIRouter(include_in_schema=False)

    @ui.get("/audit", response_class=HTMLResponse)
    async def audit(
        node: NodeDep,
        session: UiSessionDep,
        request: Request,
        actor: Annotated[str, Query(max_length=200)] = "",
        action: Annotated[str, Query(max_length=200)] = "",
        group: Annotated[str, Query(max_length=200)] = "",
        before: Annotated[int | None, Query(ge=1)] = None,
    ) -> HTMLResponse:
        caller = session.principal
        # One more than a page: whether there is an older page, without counting.
        found = await node.audit.query(
            caller,
            group=group.strip() or None,
            actor=actor.strip() or None,
            action=action.strip() or None,
            before_id=before,
            limit=AUDIT_PAGE_SIZE + 1,
        )
        shown = found[:AUDIT_PAGE_SIZE]
        readable = caller.readable_groups()
        groups = (
            sorted({job.key.group for job in await node.jobs.list()})
            if readable is None
            else sorted(readable)
        )
        return page(
            request,
            "audit.html",
            session,
            rows=[
                AuditRow(record, _pretty(record.entry.before), _pretty(record.entry.after))
                for record in shown
            ],
            older=shown[-1].id if len(found) > AUDIT_PAGE_SIZE else None,
            before=before,
            actor=actor,
            action=action,
            group=group,
            groups=groups,
            actions=_ACTIONS,
        )

    return ui
