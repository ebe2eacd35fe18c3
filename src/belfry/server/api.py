"""The HTTP API (``/api/v1``), health endpoints, and the app factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse

from belfry import __version__
from belfry.core.calendars import CalendarSpec
from belfry.core.drift import job_drift
from belfry.core.jobs import JobKey
from belfry.core.permissions import Permission
from belfry.core.records import JobRecord
from belfry.core.states import RunState, is_final
from belfry.ports.store import InvalidValue
from belfry.server.accounts_api import accounts_router
from belfry.server.alerts_api import alerts_router
from belfry.server.authentication import Authentication
from belfry.server.backfill_api import backfill_router
from belfry.server.dependencies import (
    NodeDep,
    UserDep,
    address_of,
    require,
    require_global_admin,
)
from belfry.server.health import readiness
from belfry.server.maintenance_api import maintenance_router
from belfry.server.metrics_api import metrics_router
from belfry.server.node import Node
from belfry.server.oidc_api import oidc_router
from belfry.server.operations import (
    apply_changes,
    cluster_overview,
    find_job,
    find_run,
    kill_run,
    require_same_name,
    set_paused,
    trigger_job,
)
from belfry.server.request_limits import RequestSizeLimit
from belfry.server.schemas import (
    ERROR_RESPONSES,
    PAGED_LIST_RESPONSE,
    ApplyRequest,
    ApplyResponse,
    CalendarChangeOut,
    CalendarOut,
    ChangeOut,
    ChunkOut,
    ClusterOut,
    DriftOut,
    EventOut,
    ExplanationOut,
    JobDetail,
    JobSummary,
    NamedChangeOut,
    OutputPage,
    PauseRequest,
    RunDetail,
    RunOut,
    TriggerOut,
)
from belfry.server.ui import mount_ui
from belfry.server.worker_api import worker_router
from belfry.services.chain_checks import ChainBroken
from belfry.services.jobs import CalendarInUse, UnknownCalendar, UnknownJob

__all__ = ["create_app"]

log = logging.getLogger(__name__)

# ``GET /api/v1/jobs`` pages: the default and largest page sizes (README, "HTTP API").
DEFAULT_JOBS_PAGE = 100
MAX_JOBS_PAGE = 1000
# Past any real fleet, and small enough for either database's integer OFFSET.
MAX_JOBS_OFFSET = 1_000_000_000
_WORDS = "Words, each found (any case) in the job's group/name, description or pool."


def _router() -> APIRouter:
    # Every route is for people (and admin tokens); each checks the caller's role on the
    # group it touches.
    api = APIRouter(prefix="/api/v1", dependencies=[Depends(_user_only)], responses=ERROR_RESPONSES)

    @api.get("/jobs", response_model=list[JobSummary], responses=PAGED_LIST_RESPONSE)
    async def list_jobs(
        node: NodeDep,
        caller: UserDep,
        request: Request,
        response: Response,
        group: str | None = None,
        q: Annotated[str, Query(max_length=200, description=_WORDS)] = "",
        paused: Annotated[bool | None, Query(description="Only paused (or unpaused) jobs.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_JOBS_PAGE)] = DEFAULT_JOBS_PAGE,
        offset: Annotated[int, Query(ge=0, le=MAX_JOBS_OFFSET)] = 0,
    ) -> list[JobSummary]:
        """The jobs of the groups the caller may read (or of ``group``), one page at a time
        in group/name order: ``Link: <…>; rel="next"`` names the next page while there is
        one, and ``X-Total-Count`` says how many jobs match in all."""
        if group is not None:
            require(caller, Permission.READ, group)
        # The database filters, counts and pages: a page of a 100,000-job fleet reads
        # ``limit`` rows, not the fleet.
        total, page = await node.store.search_jobs(
            groups=caller.readable_groups(),
            group=group,
            words=q.split(),
            paused=paused,
            offset=offset,
            limit=limit,
        )
        response.headers["X-Total-Count"] = str(total)
        if offset + len(page) < total:
            following = request.url.include_query_params(limit=limit, offset=offset + limit)
            # A reference without scheme and host (RFC 8288 allows it): it holds behind
            # proxies that rewrite the host the server sees.
            response.headers["Link"] = f'<{following.path}?{following.query}>; rel="next"'
        return await _summaries(node, page)

    @api.get("/jobs/{group}/{name}", response_model=JobDetail)
    async def show_job(
        node: NodeDep,
        caller: UserDep,
        group: str,
        name: str,
        runs: Annotated[int, Query(ge=1, le=500)] = 20,
    ) -> JobDetail:
        job = await find_job(node, caller, group, name)
        recent = await node.store.list_runs(job_id=job.id, limit=runs)
        explanation = await node.jobs.explain(job, datetime.now(UTC), 5)
        summary = JobSummary.of(job, recent[0] if recent else None)
        return JobDetail(
            **summary.model_dump(),
            spec=job.spec.to_document(),
            description=explanation.description,
            next=explanation.instants,
            upcoming=ExplanationOut.model_validate(explanation.to_json()).occurrences,
            recent_runs=[RunOut.of(run) for run in recent],
            drift=DriftOut.of(job_drift(job)),
            followed_by=await node.jobs.followers(job.key),
        )

    @api.get("/jobs/{group}/{name}/explain", response_model=ExplanationOut)
    async def explain_job(
        node: NodeDep,
        caller: UserDep,
        group: str,
        name: str,
        from_: Annotated[datetime | None, Query(alias="from")] = None,
        n: Annotated[int, Query(ge=1, le=1000)] = 5,
    ) -> ExplanationOut:
        """The job's next runs as its scheduler sees them (its calendars included), with
        every occurrence DST or a calendar moves, defers, skips or drops marked."""
        job = await find_job(node, caller, group, name)
        after = from_ or datetime.now(UTC)
        if after.tzinfo is None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_ENTITY, "from: give a time zone, e.g. ...Z"
            )
        explanation = await node.jobs.explain(job, after, n)
        return ExplanationOut.model_validate(explanation.to_json())

    @api.delete("/jobs/{group}/{name}", status_code=status.HTTP_204_NO_CONTENT)
    async def delete_job(
        node: NodeDep, caller: UserDep, request: Request, group: str, name: str
    ) -> None:
        require(caller, Permission.EDIT, group)
        job = await find_job(node, caller, group, name)
        try:
            await node.jobs.delete(job.key)
        except UnknownJob as error:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
        except ChainBroken as error:
            raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
        await node.audit.record(
            caller,
            "job.delete",
            address=address_of(request),
            group=group,
            target=str(job.key),
            before=job.spec.to_document(),
        )

    @api.post("/apply", response_model=ApplyResponse)
    async def apply(
        node: NodeDep, caller: UserDep, http: Request, request: ApplyRequest
    ) -> ApplyResponse:
        """Make the jobs of the groups in the request match it (editor on each group);
        calendars it would change need a global admin."""
        result = await apply_changes(node, caller, address_of(http), request)
        return ApplyResponse(
            dry_run=result.dry_run,
            changes=[
                ChangeOut(
                    job=change.job,
                    action=change.action,
                    fields={key: list(pair) for key, pair in change.fields.items()},
                    drift=DriftOut.of(change.drift),
                )
                for change in result.changes
            ],
            channel_changes=[NamedChangeOut.of(change) for change in result.channel_changes],
            group_changes=[NamedChangeOut.of(change) for change in result.group_changes],
            calendar_changes=[
                CalendarChangeOut(
                    calendar=change.job,
                    action=change.action,
                    fields={key: list(pair) for key, pair in change.fields.items()},
                )
                for change in result.calendar_changes
            ],
        )

    @api.get("/calendars", response_model=list[CalendarOut])
    async def list_calendars(node: NodeDep) -> list[CalendarOut]:
        return [CalendarOut.of(record) for record in await node.jobs.list_calendars()]

    @api.get("/calendars/{name}", response_model=CalendarOut)
    async def show_calendar(node: NodeDep, name: str) -> CalendarOut:
        try:
            return CalendarOut.of(await node.jobs.get_calendar(name))
        except UnknownCalendar as error:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None

    @api.put("/calendars/{name}", response_model=CalendarOut)
    async def put_calendar(
        node: NodeDep, caller: UserDep, request: Request, name: str, spec: CalendarSpec
    ) -> CalendarOut:
        """Create or replace one calendar (the same checks as ``apply``; global admins)."""
        require_global_admin(caller)
        require_same_name(spec.name, name)
        await apply_changes(node, caller, address_of(request), ApplyRequest(calendars=[spec]))
        return CalendarOut.of(await node.jobs.get_calendar(name))

    @api.delete("/calendars/{name}", status_code=status.HTTP_204_NO_CONTENT)
    async def delete_calendar(node: NodeDep, caller: UserDep, request: Request, name: str) -> None:
        require_global_admin(caller)
        try:
            await node.jobs.delete_calendar(name)
        except UnknownCalendar as error:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
        except CalendarInUse as error:
            raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
        await node.audit.record(caller, "calendar.delete", address=address_of(request), target=name)

    @api.post("/jobs/{group}/{name}/run", response_model=TriggerOut, status_code=201)
    async def run_now(
        node: NodeDep, caller: UserDep, request: Request, group: str, name: str
    ) -> TriggerOut:
        made = await trigger_job(node, caller, address_of(request), group, name)
        return TriggerOut.of_runs(made)

    @api.post("/jobs/{group}/{name}/pause", response_model=JobSummary)
    async def pause(
        node: NodeDep,
        caller: UserDep,
        request: Request,
        group: str,
        name: str,
        body: PauseRequest | None = None,
    ) -> JobSummary:
        note = body.note if body else None
        until = body.until if body else None
        job = await set_paused(node, caller, address_of(request), group, name, True, note, until)
        return (await _summaries(node, [job]))[0]

    @api.post("/jobs/{group}/{name}/resume", response_model=JobSummary)
    async def resume(
        node: NodeDep, caller: UserDep, request: Request, group: str, name: str
    ) -> JobSummary:
        job = await set_paused(node, caller, address_of(request), group, name, False)
        return (await _summaries(node, [job]))[0]

    @api.get("/runs", response_model=list[RunOut])
    async def list_runs(
        node: NodeDep,
        caller: UserDep,
        job: str | None = None,
        state: list[RunState] | None = Query(default=None),
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        before: int | None = None,
    ) -> list[RunOut]:
        job_id = None
        if job is not None:
            try:
                key = JobKey.parse(job)
            except ValueError as error:
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(error)) from None
            job_id = (await find_job(node, caller, key.group, key.name)).id
        runs = await node.store.list_runs(
            job_id=job_id,
            states=state,
            limit=limit,
            before_id=before,
            groups=caller.readable_groups(),
        )
        return [RunOut.of(run) for run in runs]

    @api.get("/runs/{run_id}", response_model=RunDetail)
    async def show_run(node: NodeDep, caller: UserDep, run_id: int) -> RunDetail:
        run = await find_run(node, caller, run_id)
        events = await node.store.run_events(run_id)
        return RunDetail(
            **RunOut.of(run).model_dump(), events=[EventOut.of(event) for event in events]
        )

    @api.get("/runs/{run_id}/output", response_model=OutputPage)
    async def run_output(
        node: NodeDep,
        caller: UserDep,
        run_id: int,
        after: int = -1,
        wait: Annotated[float, Query(ge=0, le=60)] = 0,
        limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    ) -> OutputPage:
        """Output chunks after ``after``; with ``wait``, a long poll that returns as soon
        as there is new output or the run ends."""
        run = await find_run(node, caller, run_id)
        chunks = await node.store.read_output(run_id, after, limit)
        if not chunks and wait > 0 and not is_final(run.state):
            await node.runs.watchers.wait(run_id, wait)
            run = await node.store.get_run(run_id) or run
            chunks = await node.store.read_output(run_id, after, limit)
        done = is_final(run.state) and len(chunks) < limit
        if done and chunks:
            # Output can land after the final state only in the same batch; re-check.
            done = not await node.store.read_output(run_id, chunks[-1].seq, 1)
        return OutputPage(run=RunOut.of(run), chunks=[ChunkOut.of(c) for c in chunks], done=done)

    @api.post("/runs/{run_id}/kill", response_model=RunOut)
    async def kill(node: NodeDep, caller: UserDep, request: Request, run_id: int) -> RunOut:
        return RunOut.of(await kill_run(node, caller, address_of(request), run_id))

    @api.get("/cluster", response_model=ClusterOut)
    async def cluster(node: NodeDep, caller: UserDep) -> ClusterOut:
        """Server nodes and workers: pools, tags, capacity, state and load."""
        return await cluster_overview(node)

    return api


async def _user_only(caller: UserDep) -> None:
    """Router-wide: no endpoint here answers anonymous callers or worker tokens."""


async def _summaries(node: Node, jobs: list[JobRecord]) -> list[JobSummary]:
    """Jobs with the state of their latest runs, read in one query for them all."""
    latest = await node.store.latest_runs([job.id for job in jobs])
    return [JobSummary.of(job, latest.get(job.id)) for job in jobs]


def create_app(node: Node, *, start_background: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if start_background:
            node.start_background()
        try:
            yield
        finally:
            await node.close()

    app = FastAPI(
        title="Belfry",
        version=__version__,
        description="A highly available, language-agnostic distributed cron.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.node = node

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        """Unauthenticated, for load balancers and orchestrators (server/health.py)."""
        ready = await readiness(node)
        return JSONResponse(ready.to_json(), 200 if ready.ready else 503)

    app.include_router(_router())
    app.include_router(accounts_router())
    app.include_router(alerts_router())
    app.include_router(backfill_router())
    app.include_router(maintenance_router())
    app.include_router(oidc_router())
    app.include_router(worker_router())
    mount_ui(app)
    app.include_router(metrics_router())
    app.add_exception_handler(InvalidValue, _out_of_range)
    # Extreme dates in schedules or filters (year 1 at +14:00) overflow datetime.
    app.add_exception_handler(OverflowError, _out_of_range)
    # The database is away (restarting, unreachable): say so, briefly, and let callers retry.
    app.add_exception_handler(ConnectionError, _database_unavailable)
    # Callers are known before their body is read (see authentication.py).
    app.add_middleware(Authentication, node=node)
    # Added last, so outermost of the app's middleware: an oversized body is refused first.
    app.add_middleware(RequestSizeLimit, max_bytes=node.settings.max_request_bytes)
    return app


async def _database_unavailable(request: Request, error: Exception) -> JSONResponse:
    log.warning("%s %s: %s", request.method, request.url.path, error)
    return JSONResponse({"detail": str(error)}, 503, headers={"Retry-After": "1"})


async def _out_of_range(request: Request, error: Exception) -> JSONResponse:
    """Input the database or the calendar cannot hold is the caller's mistake: 422."""
    return JSONResponse({"detail": f"a value is out of range: {error}"}, 422)
