"""Runs: the history list, a run's page, its live output (server-sent events), its kill.

A run's page shows the output stored so far; while the run is active the page follows
``/runs/{id}/events``, a stream of new output chunks whose SSE ``id`` is the last chunk's
``seq``. A reconnecting EventSource sends that id back as ``Last-Event-ID`` and the stream
resumes right after it: no chunk twice, none missed. Each connection is closed after
``STREAM_SECONDS`` (proxies and load balancers cut long idle streams anyway; this way a
reconnect is the normal case, exercised all the time, not a rare one). When the run ends
the stream sends its final state and stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from belfry.core.jobs import JobKey
from belfry.core.permissions import Permission
from belfry.core.records import OutputChunk, RunEvent, RunRecord
from belfry.core.states import ACTIVE_STATES, RunState, is_final
from belfry.ports.store import Store
from belfry.server.dependencies import NodeDep, address_of
from belfry.server.node import Node
from belfry.server.operations import find_job, find_run, kill_run
from belfry.server.ui.rendering import page, templates
from belfry.server.ui.session import UiSession, UiSessionDep

__all__ = [
    "PAGE_SIZE",
    "STREAM_SECONDS",
    "OutputReader",
    "last_seq",
    "output_tail",
    "run_router",
]

log = logging.getLogger(__name__)

PAGE_SIZE = 50
# Longest one live-output connection stays open; the browser then reconnects and resumes.
STREAM_SECONDS = 30.0
# How soon the browser reconnects after a stream closes (the SSE ``retry`` field), in ms.
RECONNECT_MS = 1000
# Longest a stream waits for news before looking at the store again: another server
# sharing the database may be the one writing this run's output (wakeups are per process).
_RECHECK_SECONDS = 1.0
# Chunks per read of a stream (and per event: a burst becomes one swap in the page).
_STREAM_BATCH = 500
# A run page shows at most the last this many chunks and characters of the output; the
# whole output is at /runs/{id}/output.txt.
_PAGE_CHUNKS = 2000
_PAGE_CHARS = 1_000_000
# Runs with a kill button: a waiting run is cancelled, an active one killed.
_KILLABLE = frozenset({RunState.SCHEDULED, *ACTIVE_STATES})


class OutputReader(Protocol):
    """What the output helpers need of a store."""

    async def read_output(
        self, run_id: int, after_seq: int = -1, limit: int = 1000
    ) -> list[OutputChunk]: ...


async def last_seq(store: OutputReader, run_id: int, known: int = -1) -> int:
    """The run's highest output ``seq`` (-1: no output), searched from ``known`` (a seq
    the run has, or -1): one read when nothing is new, a few more otherwise, never a read
    of the whole output."""

    async def more_after(seq: int) -> bool:
        return bool(await store.read_output(run_id, seq, 1))

    if not await more_after(known):
        return known
    # Gallop, then bisect: there is output after ``low`` and none after ``high``.
    low, step = known, 1
    high = low + step
    while await more_after(high):
        low, step = high, step * 2
        high = low + step
    while high - low > 1:
        middle = (low + high) // 2
        if await more_after(middle):
            low = middle
        else:
            high = middle
    return high


async def output_tail(
    store: OutputReader, run_id: int, chunks: int, chars: int, known: int = -1
) -> tuple[list[OutputChunk], bool]:
    """The run's last output: at most ``chunks`` chunks and about ``chars`` characters
    (whole chunks), and whether earlier output exists that is left out."""
    last = await last_seq(store, run_id, known)
    if last < 0:
        return [], False
    tail = await store.read_output(run_id, max(-1, last - chunks), chunks)
    # The newest chunks within the budget; at least one, however large.
    start, size = len(tail), 0
    while start > 0:
        size += len(tail[start - 1].data)
        if size > chars and start < len(tail):
            break
        start -= 1
    shown = tail[start:]
    if start > 0:
        return shown, True
    first = await store.read_output(run_id, -1, 1)
    return shown, bool(first) and bool(shown) and first[0].seq < shown[0].seq


def _resume_point(last_event_id: str | None, after: int) -> int:
    """Where a stream starts: after the browser's ``Last-Event-ID`` if it sent one (a
    reconnect: newer than the URL's ``after``), else after ``after``."""
    if last_event_id is not None:
        try:
            return max(-1, int(last_event_id.strip()))
        except ValueError:
            pass
    return max(-1, after)


def _seen(run: RunRecord) -> str:
    """What the page shows of a run's state: a change of it is sent to the page."""
    return run.state.value + ("+kill" if run.kill_requested else "")


@dataclass(frozen=True)
class _RunView:
    run: RunRecord
    session: UiSession
    notice: str | None = None

    def context(self, events: Sequence[RunEvent]) -> dict[str, Any]:
        group, name = self.run.job.split("/", 1)
        return {
            "run": self.run,
            "group": group,
            "name": name,
            "events": events,
            "active": not is_final(self.run.state),
            "can_kill": self.run.state in _KILLABLE
            and not self.run.kill_requested
            and self.session.principal.can(Permission.OPERATE, group),
            "notice": self.notice,
        }


async def _summary_html(node: Node, view: _RunView) -> str:
    """The run's facts and actions, and its timeline (out of band): the parts of its page
    that change."""
    events = await node.store.run_events(view.run.id)
    context = view.context(events)
    return templates.get_template("run_summary.html").render(
        context, session=view.session, user=view.session.principal, oob=True
    )


def _chunks_html(chunks: Sequence[OutputChunk]) -> str:
    return templates.get_template("run_chunks.html").render(chunks=chunks)


async def _live_events(
    node: Node, session: UiSession, run: RunRecord, after: int, seen: str
) -> AsyncIterator[ServerSentEvent]:
    """New output of ``run`` after ``after`` as it arrives, its state when it changes
    from ``seen``, and its final state at the end; at most ``STREAM_SECONDS`` long."""
    yield ServerSentEvent(retry=RECONNECT_MS)
    try:
        async for event in _follow(node, session, run, after, seen):
            yield event
    except ConnectionError as error:
        # The database is away: end this connection; the browser retries and resumes.
        log.warning("live output of run %d: %s", run.id, error)


async def _follow(
    node: Node, session: UiSession, run: RunRecord, after: int, seen: str
) -> AsyncIterator[ServerSentEvent]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STREAM_SECONDS
    while True:
        # The state is read before the output: a run's output is stored before its end,
        # so a run seen final here has all its output readable by the next line.
        current = await node.store.get_run(run.id)
        if current is None:  # deleted (its job was) meanwhile
            yield ServerSentEvent("<p id='run-summary'>This run was deleted.</p>", event="end")
            return
        chunks = await node.store.read_output(run.id, after, _STREAM_BATCH)
        if chunks:
            after = chunks[-1].seq
            yield ServerSentEvent(_chunks_html(chunks), event="chunk", id=str(after))
        if is_final(current.state) and not chunks:
            yield ServerSentEvent(
                await _summary_html(node, _RunView(current, session)), event="end"
            )
            return
        if _seen(current) != seen and not is_final(current.state):  # "end" follows
            seen = _seen(current)
            yield ServerSentEvent(
                await _summary_html(node, _RunView(current, session)), event="summary"
            )
        remaining = deadline - loop.time()
        if remaining <= 0:
            return  # the browser reconnects, with Last-Event-ID
        if len(chunks) < _STREAM_BATCH:
            await node.runs.watchers.wait(run.id, min(remaining, _RECHECK_SECONDS))


async def _all_output(store: Store, run_id: int) -> AsyncIterator[str]:
    after = -1
    while chunks := await store.read_output(run_id, after, 1000):
        after = chunks[-1].seq
        yield "".join(chunk.data for chunk in chunks)


def run_router() -> APIRouter:
    ui = APIRouter(include_in_schema=False)

    @ui.get("/runs", response_class=HTMLResponse)
    async def runs(
        node: NodeDep,
        session: UiSessionDep,
        request: Request,
        job: Annotated[str, Query(max_length=250)] = "",
        state: Annotated[str, Query(max_length=20)] = "",
        before: Annotated[int | None, Query(ge=1)] = None,
    ) -> HTMLResponse:
        """Run history, newest first, like ``belfry runs`` (skips included)."""
        job = job.strip()
        problem = None
        job_id = None
        if job:
            try:
                key = JobKey.parse(job)
                job_id = (await find_job(node, session.principal, key.group, key.name)).id
            except ValueError as error:
                problem = str(error)
            except HTTPException as error:
                problem = str(error.detail)
        states = [RunState(state)] if state in {value.value for value in RunState} else None
        rows: list[RunRecord] = []
        if problem is None:
            rows = await node.store.list_runs(
                job_id=job_id,
                states=states,
                limit=PAGE_SIZE + 1,
                before_id=before,
                groups=session.principal.readable_groups(),
            )
        older = rows[PAGE_SIZE - 1].id if len(rows) > PAGE_SIZE else None
        return page(
            request,
            "runs.html",
            session,
            rows=rows[:PAGE_SIZE],
            job=job,
            state=state if states else "",
            states=[value.value for value in RunState],
            before=before,
            older=older,
            problem=problem,
        )

    @ui.get("/runs/{run_id}", response_class=HTMLResponse)
    async def run_page(
        node: NodeDep, session: UiSessionDep, request: Request, run_id: int
    ) -> HTMLResponse:
        run = await find_run(node, session.principal, run_id)
        chunks, earlier = await output_tail(node.store, run_id, _PAGE_CHUNKS, _PAGE_CHARS)
        events = await node.store.run_events(run_id)
        view = _RunView(run, session)
        return page(
            request,
            "run.html",
            session,
            **view.context(events),
            chunks=chunks,
            earlier=earlier,
            # The stream resumes after the last chunk shown (or after the earlier ones
            # left out, when none is shown).
            last_seq=chunks[-1].seq if chunks else -1,
            seen=_seen(run),
        )

    @ui.get("/runs/{run_id}/events", response_model=None)
    async def run_stream(
        node: NodeDep,
        session: UiSessionDep,
        run_id: int,
        after: Annotated[int, Query(ge=-1)] = -1,
        seen: Annotated[str, Query(max_length=40)] = "",
        last_event_id: Annotated[str | None, Header(max_length=40)] = None,
    ) -> EventSourceResponse:
        """Server-sent events: ``chunk`` (new output, HTML; ``id`` = its last seq),
        ``summary`` (the run's state changed: its facts and timeline, HTML) and ``end``
        (the same, final; the stream then stops)."""
        run = await find_run(node, session.principal, run_id)
        return EventSourceResponse(
            _live_events(node, session, run, _resume_point(last_event_id, after), seen),
            # Proxies must neither cache nor buffer the stream.
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
            ping=15,
        )

    @ui.get("/runs/{run_id}/output.txt", response_model=None)
    async def raw_output(node: NodeDep, session: UiSessionDep, run_id: int) -> Response:
        """The whole stored output as plain text (never sniffed as HTML: it is the
        command's, not ours)."""
        await find_run(node, session.principal, run_id)
        return StreamingResponse(
            _all_output(node.store, run_id),
            media_type="text/plain; charset=utf-8",
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"},
        )

    @ui.post("/runs/{run_id}/kill", response_model=None)
    async def kill(node: NodeDep, session: UiSessionDep, request: Request, run_id: int) -> Response:
        notice = None
        try:
            run = await kill_run(node, session.principal, address_of(request), run_id)
        except HTTPException as error:
            if error.status_code != status.HTTP_409_CONFLICT:
                raise
            # Ended between the page's last update and the click: show how.
            run = await find_run(node, session.principal, run_id)
            notice = str(error.detail)
        if not request.headers.get("HX-Request"):
            return RedirectResponse(f"/runs/{run_id}", status_code=status.HTTP_303_SEE_OTHER)
        return HTMLResponse(await _summary_html(node, _RunView(run, session, notice)))

    return ui
