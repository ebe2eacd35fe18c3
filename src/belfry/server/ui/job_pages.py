"""The jobs list: every job the user may read, searched, filtered and paged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from belfry.core.records import JobRecord, RunRecord
from belfry.server.dependencies import NodeDep
from belfry.server.ui.rendering import page
from belfry.server.ui.session import UiSessionDep

__all__ = ["PAGE_SIZE", "JobRow", "job_router"]

PAGE_SIZE = 50
# The quick filters above the list: what a user looks for first.
_SHOWS = {"all": "All", "failing": "Failing", "paused": "Paused", "running": "Running"}


@dataclass(frozen=True)
class JobRow:
    job: JobRecord
    latest: RunRecord | None


def _matches(job: JobRecord, words: list[str]) -> bool:
    text = f"{job.key} {job.spec.description} {job.spec.pool}".lower()
    return all(word in text for word in words)


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
        every = await node.jobs.list()
        visible = [job for job in every if readable is None or job.key.group in readable]
        groups = sorted({job.key.group for job in visible})
        words = q.lower().split()
        picked = [
            job
            for job in visible
            if (not group or job.key.group == group) and (not words or _matches(job, words))
        ]
        show = show if show in _SHOWS else "all"
        if show != "all":
            # Filtering by the latest run's state needs every candidate's latest run.
            latest = await node.store.latest_runs([job.id for job in picked])
            rows = [JobRow(job, latest.get(job.id)) for job in picked]
            rows = [row for row in rows if _shown(row, show)]
            total = len(rows)
            rows = rows[(page_number - 1) * PAGE_SIZE : page_number * PAGE_SIZE]
        else:
            total = len(picked)
            shown = picked[(page_number - 1) * PAGE_SIZE : page_number * PAGE_SIZE]
            latest = await node.store.latest_runs([job.id for job in shown])
            rows = [JobRow(job, latest.get(job.id)) for job in shown]
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
