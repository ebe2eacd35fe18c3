"""The jobs list: every job the user may read, searched, filtered and paged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from belfry.core.records import JobRecord, RunRecord
from belfry.core.states import RunState
from belfry.server.dependencies import NodeDep
from belfry.server.ui.rendering import page
from belfry.server.ui.session import UiSessionDep

__all__ = ["PAGE_SIZE", "JobRow", "job_router"]

PAGE_SIZE = 50
# The quick filters above the list: what a user looks for first.
_SHOWS = {"all": "All", "failing": "Failing", "paused": "Paused", "running": "Running"}
# The quick filters by the state of a job's latest run.
_LATEST_STATES = {
    "failing": frozenset({RunState.FAILED, RunState.TIMED_OUT, RunState.LOST}),
    "running": frozenset({RunState.CLAIMED, RunState.RUNNING}),
}


@dataclass(frozen=True)
class JobRow:
    job: JobRecord
    latest: RunRecord | None


def job_router() -> APIRouter:
    ui = APIRouter(include_in_schema=False)

    @ui.get("/jobs", response_class=HTMLResponse)
    async def jobs(
        node: NodeDep,
        session: UiSessionDep,
        request: Request,
        q: Annotated[str, Query(max_length=200)] = "",
        group: Annotated[str, Query(max_length=100)] = "",
        show: str = "all",
        page_number: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
    ) -> HTMLResponse:
        readable = session.principal.readable_groups()
        show = show if show in _SHOWS else "all"
        offset = (page_number - 1) * PAGE_SIZE
        # By the latest run's state too, in the query: a page reads its own jobs only.
        total, shown = await node.store.search_jobs(
            groups=readable,
            group=group or None,
            words=q.split(),
            paused=True if show == "paused" else None,
            latest_states=_LATEST_STATES.get(show),
            offset=offset,
            limit=PAGE_SIZE,
        )
        latest = await node.store.latest_runs([job.id for job in shown])
        rows = [JobRow(job, latest.get(job.id)) for job in shown]
        groups = await node.store.job_groups(readable)
        pages = max(1, -(-total // PAGE_SIZE))
        return page(
            request,
            "jobs.html",
            session,
            rows=rows,
            total=total,
            q=q,
            group=group,
            groups=groups,
            show=show,
            shows=_SHOWS,
            page_number=page_number,
            pages=pages,
        )

    return ui
