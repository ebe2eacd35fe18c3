"""The dashboard (``/``): what runs now, what comes next, what went wrong, who does the work.

Two fragments keep it current without a reload: the runs running now, with their latest
output lines, every 2 s; the rest every 10 s. Runs and jobs are those of the groups the
user may read; servers and workers are the cluster's (as ``belfry cluster`` shows them to
every user).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from belfry.core.records import RunRecord
from belfry.core.states import ACTIVE_STATES, RunState
from belfry.ports.store import Store
from belfry.server.dependencies import NodeDep
from belfry.server.node import Node
from belfry.server.operations import cluster_overview
from belfry.server.ui.rendering import page
from belfry.server.ui.run_pages import last_seq
from belfry.server.ui.session import UiSession, UiSessionDep

__all__ = ["RunningRun", "dashboard_router"]

# Runs shown with their output; more are counted and linked to the runs list.
_RUNNING_SHOWN = 20
# The latest output lines shown per running run, read from at most this many chunks.
_TAIL_LINES = 5
_TAIL_CHUNKS = 4
_LINE_CHARS = 200
_LIST_SIZE = 10
_FAILURES = (RunState.FAILED, RunState.TIMED_OUT, RunState.LOST)


@dataclass(frozen=True)
class RunningRun:
    run: RunRecord
    lines: list[str]


class _Tails:
    """The latest output lines of running runs. Remembers each run's last output seq, so a
    poll finds the end of the output in a read or two (an active run's output only grows)."""

    def __init__(self) -> None:
        self._known: dict[int, int] = {}

    async def lines(self, store: Store, run_id: int) -> list[str]:
        last = await last_seq(store, run_id, self._known.get(run_id, -1))
        self._known[run_id] = last
        if last < 0:
            return []
        chunks = await store.read_output(run_id, max(-1, last - _TAIL_CHUNKS), _TAIL_CHUNKS)
        text = "".join(chunk.data for chunk in chunks).replace("\r\n", "\n")
        lines = text.rstrip("\n").split("\n")[-_TAIL_LINES:]
        return [line if len(line) <= _LINE_CHARS else line[:_LINE_CHARS] + "…" for line in lines]

    def forget_all_but(self, run_ids: set[int]) -> None:
        for run_id in set(self._known) - run_ids:
            del self._known[run_id]


def _readable(session: UiSession, group: str) -> bool:
    readable = session.principal.readable_groups()
    return readable is None or group in readable


async def _running(node: Node, session: UiSession, tails: _Tails) -> dict[str, Any]:
    active = await node.store.runs_in_states(sorted(ACTIVE_STATES))
    mine = [run for run in active if _readable(session, run.job.split("/", 1)[0])]
    mine.sort(key=lambda run: run.id, reverse=True)
    shown = mine[:_RUNNING_SHOWN]
    rows = [RunningRun(run, await tails.lines(node.store, run.id)) for run in shown]
    tails.forget_all_but({run.id for run in active})
    return {"running": rows, "running_total": len(mine)}


async def _overview(node: Node, session: UiSession) -> dict[str, Any]:
    groups = session.principal.readable_groups()
    # Queries, not the job list: at 100,000 jobs reading them all blocked the server.
    upcoming = await node.store.upcoming_jobs(groups=groups, limit=_LIST_SIZE)
    paused, _ = await node.store.search_jobs(groups=groups, paused=True, limit=0)
    failures = await node.store.list_runs(states=_FAILURES, limit=_LIST_SIZE, groups=groups)
    skips = await node.store.list_runs(states=[RunState.SKIPPED], limit=_LIST_SIZE, groups=groups)
    return {
        "upcoming": upcoming,
        "paused": paused,
        "failures": failures,
        "skips": skips,
        "cluster": await cluster_overview(node),
    }


def dashboard_router() -> APIRouter:
    ui = APIRouter(include_in_schema=False)
    tails = _Tails()

    @ui.get("/", response_class=HTMLResponse)
    async def dashboard(node: NodeDep, session: UiSessionDep, request: Request) -> HTMLResponse:
        return page(
            request,
            "dashboard.html",
            session,
            **await _running(node, session, tails),
            **await _overview(node, session),
        )

    @ui.get("/dashboard/running", response_class=HTMLResponse)
    async def running(node: NodeDep, session: UiSessionDep, request: Request) -> HTMLResponse:
        return page(
            request, "dashboard_running.html", session, **await _running(node, session, tails)
        )

    @ui.get("/dashboard/overview", response_class=HTMLResponse)
    async def overview(node: NodeDep, session: UiSessionDep, request: Request) -> HTMLResponse:
        return page(request, "dashboard_overview.html", session, **await _overview(node, session))

    return ui
