"""Backfill in the browser: ``/jobs/{group}/{name}/backfill``.

A form with the range and the pacing; Preview is a dry run listing each occurrence and
what becomes of it, and "Run backfill…" with its confirming button (``confirm.html``)
makes the runs. Both go through ``backfill_api.backfill_job``: the permissions, checks
and audit entry of the API.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from belfry.server.backfill_api import BackfillIn, backfill_job
from belfry.server.dependencies import NodeDep, address_of
from belfry.server.operations import find_job
from belfry.server.ui.rendering import page
from belfry.server.ui.session import UiSessionDep
from belfry.services.backfill import OccurrenceStatus

__all__ = ["backfill_router"]


def _instant(text: str, name: str) -> datetime:
    """A form's time: RFC 3339, a time without a zone being UTC (as the CLI reads it)."""
    try:
        instant = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name}: not an RFC 3339 time (e.g. 2027-01-01T10:00:00Z)") from None
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


def backfill_router() -> APIRouter:
    ui = APIRouter(include_in_schema=False)

    @ui.get("/jobs/{group}/{name}/backfill", response_class=HTMLResponse)
    async def backfill_form(
        node: NodeDep, session: UiSessionDep, request: Request, group: str, name: str
    ) -> HTMLResponse:
        job = await find_job(node, session.principal, group, name)
        form = {"start": "", "end": "", "overlap": "forbid", "max_parallel": "1", "rate": ""}
        return page(request, "backfill.html", session, job=job, form=form)

    @ui.post("/jobs/{group}/{name}/backfill", response_class=HTMLResponse)
    async def backfill(
        node: NodeDep,
        session: UiSessionDep,
        request: Request,
        group: str,
        name: str,
        start: Annotated[str, Form(alias="from")] = "",
        end: Annotated[str, Form(alias="to")] = "",
        overlap: Annotated[str, Form()] = "forbid",
        max_parallel: Annotated[str, Form()] = "1",
        rate: Annotated[str, Form()] = "",
        action: Annotated[str, Form()] = "preview",
    ) -> HTMLResponse:
        job = await find_job(node, session.principal, group, name)
        form = {
            "start": start,
            "end": end,
            "overlap": overlap,
            "max_parallel": max_parallel,
            "rate": rate,
        }

        def answer(code: int = status.HTTP_200_OK, **context: Any) -> HTMLResponse:
            return page(
                request, "backfill.html", session, status_code=code, job=job, form=form, **context
            )

        try:
            body = BackfillIn.model_validate(
                {
                    "from": _instant(start, "from"),
                    "to": _instant(end, "to"),
                    "dry_run": action != "run",
                    "overlap": overlap,
                    "max_parallel": max_parallel or "1",
                    "rate": rate.strip() or None,
                }
            )
        except ValueError as error:
            problem = str(error)
            if isinstance(error, ValidationError):
                first = error.errors()[0]
                problem = f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
            return answer(status.HTTP_422_UNPROCESSABLE_ENTITY, problem=problem)
        try:
            plan = await backfill_job(
                node, session.principal, address_of(request), group, name, body
            )
        except HTTPException as error:
            # Refused as the API refuses it (403, a bad range): said on the page.
            return answer(error.status_code, problem=str(error.detail))
        counts = {kind.value: plan.count(kind) for kind in OccurrenceStatus}
        made = {run.scheduled_for: run.id for run in plan.runs}
        return answer(plan=plan, counts=counts, made=made)

    return ui
