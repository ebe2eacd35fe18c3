"""A job's page (its spec, schedule, ledger of runs and skips, durations, success rate, and
the run/pause/resume actions), and the explain page for any schedule.

Read pages work without JavaScript: actions are plain forms that redirect back to the job
page (post/redirect/get). With htmx the same forms swap the page's header and ledger in
place and say what happened in ``#flash``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from io import StringIO
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import available_timezones

from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from ruamel.yaml import YAML

from belfry.core.durations import format_duration, parse_duration
from belfry.core.explanations import Explanation, explain_schedule
from belfry.core.permissions import Permission
from belfry.core.records import JobRecord, RunRecord
from belfry.core.schedules import ScheduleError, parse_schedule, parse_timezone
from belfry.core.states import FINAL_STATES, RunState
from belfry.server.dependencies import NodeDep, address_of
from belfry.server.node import Node
from belfry.server.operations import find_job, set_paused, trigger_job
from belfry.server.ui.rendering import page, templates
from belfry.server.ui.session import UiSession, UiSessionDep

__all__ = [
    "CHART_RUNS",
    "LEDGER_PAGE",
    "RATE_RUNS",
    "Bar",
    "Chart",
    "InstantRow",
    "SuccessRate",
    "job_detail_router",
]

LEDGER_PAGE = 50
CHART_RUNS = 50
RATE_RUNS = 100
UPCOMING = 10
# A calendar can rule out thousands of occurrences before the next run (an every-minute
# job open on weekends only): the page lists this many at most and counts the rest.
MAX_ROWS = 60
MAX_EXPLAIN = 1000
NOTE_LENGTH = 1000  # as the API's PauseRequest
# A run's ending: skips are occurrences that never ran, so they are no success nor failure.
ENDED = tuple(sorted(FINAL_STATES - {RunState.SKIPPED}))
# What a no-JavaScript action redirect may say on the job page (``?done=``).
_DONE = {"paused": "Paused.", "resumed": "Resumed."}

_CHART_WIDTH = 600
_CHART_HEIGHT = 120
_BAR_STEP = _CHART_WIDTH / CHART_RUNS


@dataclass(frozen=True)
class InstantRow:
    """One occurrence of an explanation as a table row."""

    number: int | None  # the run's number, None for one that does not run
    utc: datetime | None
    local: str
    status: str
    note: str


@dataclass(frozen=True)
class Bar:
    run: RunRecord
    x: float
    y: float
    height: float
    tooltip: str


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    summary: str
    longest: str


@dataclass(frozen=True)
class SuccessRate:
    succeeded: int
    finished: int

    @property
    def percent(self) -> int | None:
        return None if not self.finished else round(100 * self.succeeded / self.finished)


def _instant_rows(explanation: Explanation, limit: int = MAX_ROWS) -> tuple[list[InstantRow], int]:
    """The explanation's occurrences as rows (runs numbered), and how many were left off."""
    rows: list[InstantRow] = []
    number = 0
    for item in explanation.occurrences[:limit]:
        if item.runs_at is not None:
            number += 1
        rows.append(
            InstantRow(
                number=number if item.runs_at is not None else None,
                utc=item.runs_at or item.scheduled_for,
                local=explanation.local_time(item),
                status=item.status,
                note=item.note,
            )
        )
    return rows, max(0, len(explanation.occurrences) - limit)


def _seconds_text(seconds: float) -> str:
    """A run's duration, as precise as it is worth: ``85ms``, ``2.4s``, ``3m12s``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 10:
        return f"{seconds:.1f}s"
    return format_duration(timedelta(seconds=round(seconds)))


def _duration(run: RunRecord) -> float | None:
    if run.started_at is None or run.finished_at is None:
        return None
    return max(0.0, (run.finished_at - run.started_at).total_seconds())


def _duration_chart(finished: Sequence[RunRecord]) -> Chart:
    """Bars of the durations of ``finished`` (newest first, as the store lists them),
    drawn oldest to newest, scaled to the longest; runs that never started have none."""
    timed = [(run, seconds) for run in finished if (seconds := _duration(run)) is not None]
    timed = timed[:CHART_RUNS][::-1]
    if not timed:
        return Chart([], "No finished runs with a duration yet.", "")
    longest = max(seconds for _, seconds in timed)
    scale = (_CHART_HEIGHT - 2) / longest if longest > 0 else 0.0
    bars = []
    for index, (run, seconds) in enumerate(timed):
        # At least a sliver, so an instant run still shows (and has its tooltip).
        height = max(2.0, seconds * scale)
        bars.append(
            Bar(
                run=run,
                x=round(index * _BAR_STEP + 1, 2),
                y=round(_CHART_HEIGHT - height, 2),
                height=round(height, 2),
                tooltip=f"run #{run.id}: {run.state.value}, {_seconds_text(seconds)}",
            )
        )
    by_state: dict[str, int] = {}
    for run, _ in timed:
        by_state[run.state.value] = by_state.get(run.state.value, 0) + 1
    counts = ", ".join(f"{count} {state}" for state, count in sorted(by_state.items()))
    median = statistics.median(seconds for _, seconds in timed)
    slowest = max(timed, key=lambda pair: pair[1])[0]
    summary = (
        f"The last {len(timed)} finished run{'' if len(timed) == 1 else 's'} ({counts}) "
        f"took {_seconds_text(median)} at the median and {_seconds_text(longest)} at the "
        f"longest (run #{slowest.id})."
    )
    return Chart(bars, summary, _seconds_text(longest))


def _success_rate(finished: Sequence[RunRecord]) -> SuccessRate:
    picked = finished[:RATE_RUNS]
    return SuccessRate(
        sum(run.state is RunState.SUCCEEDED for run in picked),
        len(picked),
    )


def _spec_yaml(job: JobRecord) -> str:
    """The spec as ``belfry export`` would write it (secrets already redacted)."""
    yaml = YAML()
    yaml.default_flow_style = False
    stream = StringIO()
    yaml.dump(job.spec.to_document(), stream)
    return stream.getvalue()


def _schedule_text(job: JobRecord) -> str:
    """A job's schedule on one line, a list joined with `` | `` (the explain page splits
    it back)."""
    schedule = job.spec.schedule
    if schedule is None:
        return job.spec.parsed_schedule().expression  # after other jobs, in words
    return schedule if isinstance(schedule, str) else " | ".join(schedule)


def _job_path(job: JobRecord) -> str:
    # Group and job names are [a-z0-9-_.]: nothing to quote.
    return f"/jobs/{job.key.group}/{job.key.name}"


def _is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def job_detail_router() -> APIRouter:
    ui = APIRouter(include_in_schema=False)

    @ui.get("/jobs/{group}/{name}", response_class=HTMLResponse)
    async def job_page(
        node: NodeDep,
        session: UiSessionDep,
        request: Request,
        group: str,
        name: str,
        before: Annotated[int | None, Query(ge=1)] = None,
        ran: Annotated[list[int] | None, Query(max_length=20)] = None,
        done: str = "",
    ) -> HTMLResponse:
        job = await find_job(node, session.principal, group, name)
        explanation = await node.jobs.explain(job, node.clock.now(), UPCOMING)
        upcoming, left_off = _instant_rows(explanation)
        finished = await node.store.list_runs(job_id=job.id, states=ENDED, limit=RATE_RUNS)
        started = []
        for run_id in ran or []:
            run = await node.store.get_run(run_id)
            if run is not None and run.job_id == job.id:  # say only what this job did
                started.append(run)
        return page(
            request,
            "job_detail.html",
            session,
            **_head(job, session),
            **await _ledger(node, job, before),
            description=explanation.description,
            schedule_line=_schedule_text(job),
            after_jobs=job.spec.after.keys(job.spec.group) if job.spec.after else [],
            followed_by=await node.jobs.followers(job.key),
            upcoming=upcoming,
            left_off=left_off,
            explain_href="/explain?"
            + urlencode({"schedule": _schedule_text(job), "tz": job.spec.timezone, "n": 10}),
            spec=_spec_yaml(job),
            chart=_duration_chart(finished),
            chart_width=_CHART_WIDTH,
            chart_height=_CHART_HEIGHT,
            bar_width=_BAR_STEP - 2,
            rate=_success_rate(finished),
            started=started,
            done=_DONE.get(done, ""),
        )

    @ui.get("/jobs/{group}/{name}/ledger", response_class=HTMLResponse)
    async def ledger(
        node: NodeDep,
        session: UiSessionDep,
        request: Request,
        group: str,
        name: str,
        before: Annotated[int | None, Query(ge=1)] = None,
    ) -> HTMLResponse:
        """The ledger alone: htmx refreshes and pages it in place."""
        job = await find_job(node, session.principal, group, name)
        return templates.TemplateResponse(
            request, "job_ledger.html", {"job": job, **await _ledger(node, job, before)}
        )

    @ui.post("/jobs/{group}/{name}/run", response_model=None)
    async def run_now(
        node: NodeDep, session: UiSessionDep, request: Request, group: str, name: str
    ) -> Response:
        try:
            made = await trigger_job(node, session.principal, address_of(request), group, name)
            job = await find_job(node, session.principal, group, name)
        except HTTPException as error:
            return _refused(request, error)
        if not _is_htmx(request):
            query = urlencode([("ran", run.id) for run in made])
            return RedirectResponse(f"{_job_path(job)}?{query}", status.HTTP_303_SEE_OTHER)
        return await _acted(request, node, session, job, started=made)

    @ui.post("/jobs/{group}/{name}/pause", response_model=None)
    async def pause(
        node: NodeDep,
        session: UiSessionDep,
        request: Request,
        group: str,
        name: str,
        note: Annotated[str, Form(max_length=NOTE_LENGTH)] = "",
        resume_after: Annotated[str, Form(max_length=50)] = "",
    ) -> Response:
        until = None
        if resume_after.strip():
            try:
                until = node.clock.now() + parse_duration(resume_after.strip())
            except ValueError as error:
                problem = HTTPException(
                    status.HTTP_422_UNPROCESSABLE_ENTITY, f"resume after: {error}"
                )
                return _refused(request, problem)
        return await _set_paused(
            request, node, session, group, name, True, note.strip(), until=until
        )

    @ui.post("/jobs/{group}/{name}/resume", response_model=None)
    async def resume(
        node: NodeDep, session: UiSessionDep, request: Request, group: str, name: str
    ) -> Response:
        return await _set_paused(request, node, session, group, name, False, "")

    @ui.get("/explain", response_class=HTMLResponse)
    async def explain_page(
        node: NodeDep,
        session: UiSessionDep,
        request: Request,
        schedule: Annotated[str, Query(max_length=1000)] = "",
        tz: Annotated[str, Query(max_length=100)] = "UTC",
        n: Annotated[str, Query(max_length=10)] = "10",
        from_: Annotated[str, Query(alias="from", max_length=40)] = "",
    ) -> HTMLResponse:
        explanation, errors = _explain_form(schedule, tz, n, from_, node.clock.now())
        rows, left_off = _instant_rows(explanation, MAX_EXPLAIN * 2) if explanation else ([], 0)
        return page(
            request,
            "explain.html",
            session,
            status_code=status.HTTP_400_BAD_REQUEST if errors else status.HTTP_200_OK,
            schedule=schedule,
            tz=tz,
            n=n,
            from_=from_,
            max_n=MAX_EXPLAIN,
            errors=errors,
            explanation=explanation,
            rows=rows,
            left_off=left_off,
            zones=_zones(),
        )

    return ui


@cache
def _zones() -> list[str]:
    """The IANA zones the explain form suggests (a scan of tzdata: once)."""
    return sorted(available_timezones())


def _explain_form(
    schedule: str, tz: str, n: str, from_: str, now: datetime
) -> tuple[Explanation | None, dict[str, str]]:
    """The explain form's answer, or what is wrong with each field.

    The fields are taken as text and checked here, so that a mistake is said next to its
    field (a validation error would answer in JSON).
    """
    errors: dict[str, str] = {}
    count = int(n) if n.strip().isdigit() else 0
    if not 1 <= count <= MAX_EXPLAIN:
        errors["n"] = f"a whole number from 1 to {MAX_EXPLAIN}"
    zone = tz.strip() or "UTC"
    try:
        parse_timezone(zone)
    except ScheduleError as error:
        errors["tz"] = str(error)
        zone = "UTC"  # the schedule is still checked, so that both fields speak at once
    after = now
    if from_.strip():
        try:
            after = _instant(from_.strip())
        except ValueError:
            errors["from"] = "an ISO 8601 time, e.g. 2027-03-27T00:00:00Z (UTC if no offset)"
    if not schedule.strip():
        return None, errors
    # A job's list of schedules is shown joined with " | ": no schedule syntax uses "|".
    parts = [part.strip() for part in schedule.split("|")]
    expression: str | list[str] = parts if len(parts) > 1 else parts[0]
    try:
        explanation = _explain(expression, zone, after, 0 if errors else count)
    except ScheduleError as error:
        errors["schedule"] = str(error)
        return None, errors
    return (None if errors else explanation), errors


def _instant(text: str) -> datetime:
    """An ISO 8601 time; without an offset, UTC (as ``belfry explain --from``)."""
    instant = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


def _explain(expression: str | list[str], timezone: str, now: datetime, count: int) -> Explanation:
    """As ``belfry explain``, and a list of schedules as a job's list is read."""
    return explain_schedule(parse_schedule(expression, timezone), after=now, count=count)


def _head(job: JobRecord, session: UiSession) -> dict[str, Any]:
    return {"job": job, "can_operate": session.principal.can(Permission.OPERATE, job.key.group)}


async def _ledger(node: Node, job: JobRecord, before: int | None) -> dict[str, Any]:
    # One more than a page tells whether there is an older page.
    runs = await node.store.list_runs(job_id=job.id, limit=LEDGER_PAGE + 1, before_id=before)
    return {
        "runs": runs[:LEDGER_PAGE],
        "older": runs[LEDGER_PAGE - 1].id if len(runs) > LEDGER_PAGE else None,
        "before": before,
    }


async def _set_paused(
    request: Request,
    node: Node,
    session: UiSession,
    group: str,
    name: str,
    paused: bool,
    note: str,
    until: datetime | None = None,
) -> Response:
    try:
        job = await set_paused(
            node,
            session.principal,
            address_of(request),
            group,
            name,
            paused,
            note or None,
            until=until,
        )
    except HTTPException as error:
        return _refused(request, error)
    done = "paused" if paused else "resumed"
    if not _is_htmx(request):
        return RedirectResponse(
            f"{_job_path(job)}?{urlencode({'done': done})}", status.HTTP_303_SEE_OTHER
        )
    return await _acted(request, node, session, job, done=_DONE[done])


async def _acted(
    request: Request,
    node: Node,
    session: UiSession,
    job: JobRecord,
    started: Sequence[RunRecord] = (),
    done: str = "",
) -> HTMLResponse:
    """An htmx action's answer: the job's header (the swap target), and out of band the
    message and the ledger, which the action may have changed."""
    return templates.TemplateResponse(
        request,
        "job_action.html",
        {
            "session": session,
            **_head(job, session),
            **await _ledger(node, job, None),
            "started": started,
            "done": done,
        },
    )


def _refused(request: Request, error: HTTPException) -> Response:
    """A refused action: the error page without JavaScript; with htmx, the reason in
    ``#flash`` (htmx swaps nothing of a 4xx answer, so it says it with a 200)."""
    if not _is_htmx(request):
        raise error
    return templates.TemplateResponse(
        request,
        "job_flash.html",
        {"error": f"Not done: {error.detail}"},
        headers={"HX-Reswap": "none"},
    )
