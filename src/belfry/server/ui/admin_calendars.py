"""Calendars (``/calendars``, ``/calendars/{name}``): each one's definition, whether now is
inside it, the next stretches of time it covers, and the jobs that use it.

Calendars are shared by all groups, so every user may read them; the jobs listed as using
one are only those of groups the user can read. A job with a calendar in ``exclude`` skips
(or defers) what the calendar covers; with it in ``only``, it runs only there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse

from belfry.core.calendars import Calendar, CalendarError, CalendarGate, compile_calendars
from belfry.core.durations import format_duration
from belfry.core.records import CalendarRecord, JobRecord
from belfry.server.dependencies import NodeDep
from belfry.server.node import Node
from belfry.server.ui.rendering import page
from belfry.server.ui.session import UiSession, UiSessionDep
from belfry.services.job_files import dump_job_files

__all__ = ["Span", "calendar_router", "covered_spans"]

# How far ahead the calendar page looks, and how many stretches it lists.
_HORIZON = timedelta(days=366)
_SPANS = 12


@dataclass(frozen=True)
class Span:
    """A stretch of time inside a calendar: ``[start, end)``; ``end`` None when it lasts
    beyond the horizon."""

    start: datetime
    end: datetime | None
    zone: ZoneInfo
    # Begun before the page looked: ``start`` is the present instant, not a boundary.
    ongoing: bool = False

    @property
    def whole_days(self) -> bool:
        return _is_midnight(self.start, self.zone) and (
            self.end is None or _is_midnight(self.end, self.zone)
        )

    @property
    def text(self) -> str:
        """``Fri 2027-12-24 to Sun 2027-12-26`` for whole days, else local times."""
        start = self.start.astimezone(self.zone)
        if self.ongoing:
            return f"now until {self.end_text}"
        if self.end is None:
            return f"from {_day(start)} {_clock(start)}, for more than a year"
        end = self.end.astimezone(self.zone)
        if self.whole_days:
            last = end - timedelta(days=1)
            return _day(start) if last.date() == start.date() else f"{_day(start)} to {_day(last)}"
        if end.date() == start.date():
            return f"{_day(start)} {_clock(start)} to {_clock(end)}"
        return f"{_day(start)} {_clock(start)} to {_day(end)} {_clock(end)}"

    @property
    def end_text(self) -> str:
        if self.end is None:
            return "beyond a year from now"
        end = self.end.astimezone(self.zone)
        return _day(end) if _is_midnight(end, self.zone) else f"{_day(end)} {_clock(end)}"

    @property
    def length(self) -> str:
        if self.end is None:
            return "more than a year"
        return format_duration(self.end - self.start)


@dataclass(frozen=True)
class Now:
    """Whether the present instant is inside the calendar, and until when."""

    inside: bool
    until: datetime | None


@dataclass(frozen=True)
class CalendarRow:
    record: CalendarRecord
    now: Now | None
    users: list[tuple[JobRecord, str]]

    @property
    def defines(self) -> str:
        """What the calendar is made of, in a few words."""
        spec = self.record.spec
        parts = [
            *(_count(len(spec.dates), "date") if spec.dates else []),
            *(_count(len(spec.ranges), "range") if spec.ranges else []),
            *(window.describe() for window in spec.weekly),
            *([f"includes {', '.join(spec.include)}"] if spec.include else []),
            *([f"excludes {', '.join(spec.exclude)}"] if spec.exclude else []),
        ]
        return "; ".join(parts)


def _count(number: int, noun: str) -> list[str]:
    return [f"{number} {noun}{'' if number == 1 else 's'}"]


def _is_midnight(instant: datetime, zone: ZoneInfo) -> bool:
    return instant.astimezone(zone).time() == time(0)


def _day(local: datetime) -> str:
    return local.strftime("%a %Y-%m-%d")


def _clock(local: datetime) -> str:
    return local.strftime("%H:%M:%S" if local.second else "%H:%M")


def _gates(calendar: Calendar) -> tuple[CalendarGate, CalendarGate]:
    """Gates that open inside the calendar and outside it: their ``next_allowed`` finds
    where the calendar's stretches start and end, to the second, DST included."""
    inside = CalendarGate(exclude=(), only=(calendar,), defer=False)
    outside = CalendarGate(exclude=(calendar,), only=(), defer=False)
    return inside, outside


def covered_spans(calendar: Calendar, after: datetime, count: int = _SPANS) -> list[Span]:
    """The next ``count`` stretches of time inside ``calendar`` from ``after`` on, within
    a year (the first may have begun already: it starts at ``after``)."""
    inside, outside = _gates(calendar)
    limit = after + _HORIZON
    spans: list[Span] = []
    cursor = after
    while len(spans) < count and cursor < limit:
        start = inside.next_allowed(cursor, within=limit - cursor)
        if start is None:
            break
        end = outside.next_allowed(start, within=limit - start)
        spans.append(Span(start, end, calendar.zone, ongoing=start == after))
        if end is None:
            break
        cursor = end
    return spans


def _now(calendar: Calendar, now: datetime) -> Now:
    inside, outside = _gates(calendar)
    if calendar.contains(now):
        return Now(True, outside.next_allowed(now, within=_HORIZON))
    return Now(False, inside.next_allowed(now, within=_HORIZON))


def _users(jobs: list[JobRecord], name: str) -> list[tuple[JobRecord, str]]:
    """The jobs naming the calendar, with how: ``exclude`` or ``only``."""
    found = []
    for job in jobs:
        for how in ("exclude", "only"):
            if name in getattr(job.spec, how):
                found.append((job, how))
    return found


async def _readable_jobs(node: Node, session: UiSession) -> list[JobRecord]:
    readable = session.principal.readable_groups()
    return [job for job in await node.jobs.list() if readable is None or job.key.group in readable]


def calendar_router() -> APIRouter:
    ui = APIRouter(include_in_schema=False)

    @ui.get("/calendars", response_class=HTMLResponse)
    async def calendars(node: NodeDep, session: UiSessionDep, request: Request) -> HTMLResponse:
        records = await node.jobs.list_calendars()
        jobs = await _readable_jobs(node, session)
        now = datetime.now(UTC)
        try:
            compiled = compile_calendars([record.spec for record in records])
        except CalendarError:  # stored calendars always resolve; show them anyway
            compiled = {}
        rows = [
            CalendarRow(
                record,
                _now(compiled[record.name], now) if record.name in compiled else None,
                _users(jobs, record.name),
            )
            for record in records
        ]
        return page(request, "calendars.html", session, rows=rows)

    @ui.get("/calendars/{name}", response_class=HTMLResponse)
    async def calendar(
        node: NodeDep, session: UiSessionDep, request: Request, name: str
    ) -> HTMLResponse:
        records = await node.jobs.list_calendars()
        record = next((record for record in records if record.name == name), None)
        if record is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no such calendar: {name}")
        now = datetime.now(UTC)
        error = None
        spans: list[Span] = []
        state = None
        try:
            compiled = compile_calendars([each.spec for each in records])[name]
        except CalendarError as problem:
            error = str(problem)
        else:
            spans = covered_spans(compiled, now)
            state = _now(compiled, now)
        spec = record.spec
        return page(
            request,
            "calendar.html",
            session,
            record=record,
            spec=spec,
            source=dump_job_files([], [spec]),
            spans=spans,
            state=state,
            error=error,
            users=_users(await _readable_jobs(node, session), name),
            members_of=[
                (each.name, "include" if name in each.spec.include else "exclude")
                for each in records
                if name in (*each.spec.include, *each.spec.exclude)
            ],
        )

    return ui
