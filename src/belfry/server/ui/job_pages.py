"""The jobs list: every job the user may read, searched, filtered and paged."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from belfry.core.records import JobRecord, RunRecord
from belfry.server.dependencies import NodeDep
from belfry.server.ui.rendering import page
from belfry.server.ui.session import UiSessionDep

__all__ = ["PAGE_SIZE", "JobRow", "job_router"]

PAGE_SIZE = 50
# "Every matching job" for the filters by latest run state.
_ALL = 1_000_000
# The quick filters above the list: what a user looks for first.
_SHOWS = {"all": "All", "failing": "Failing", "paused": "Paused", "running": "Running"}


@dataclass(frozen=True)
class JobRow:
    job: JobRecord
    latest: RunRecord | None


def _shown(row: JobRow, show: str) -> bool:
    state = row.latest.state.value if row.latest else None
    if show == "failing":
        return state in {"failed", "timed_out", "lost"}
    if show == "paused":
        return row.job.paused
    if show == "running":
        return state in {"claimed", "running"}
    return True


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
        search = partial(
            node.store.search_jobs,
            groups=readable,
            group=group or None,
            words=q.split(),
            paused=True if show == "paused" else None,
        )
        if show in ("failing", "running"):
            # By the latest run's state: the matching jobs' latest runs, then one page.
            _, matching = await search(limit=_ALL)
            latest = await node.store.latest_runs([job.id for job in matching])
            rows = [JobRow(job, latest.get(job.id)) for job in matching]
            rows = [row for row in rows if _shown(row, show)]
            total = len(rows)
            rows = rows[offset : offset + PAGE_SIZE]
        else:
            total, shown = await search(offset=offset, limit=PAGE_SIZE)
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
