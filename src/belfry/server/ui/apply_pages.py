"""Jobs as code in the browser: ``/apply`` (paste or upload YAML, preview the diff, apply)
and ``/export.yaml`` (the user's jobs as YAML, as ``belfry export`` writes them).

The YAML is checked by the same loader as ``belfry validate`` (``services.job_files``),
and its problems are shown as it prints them (``line: field: message``; an uploaded file's
name first). A preview is a dry run and an apply the real one, both through
``operations.apply_changes``: the permissions, the single transaction and the audit
entries of ``POST /api/v1/apply``.

Apply with Prune ticked deletes what the file does not mention, so it asks first: when
the dry run finds something to delete, nothing is applied and the page lists the
deletions with a second, explicit button (``confirm.html``); that button's post says
``confirmed`` and applies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile, status
from fastapi.responses import HTMLResponse, Response

from belfry.core.permissions import Permission
from belfry.server.dependencies import NodeDep, address_of, require
from belfry.server.node import Node
from belfry.server.operations import apply_changes
from belfry.server.schemas import ApplyRequest
from belfry.server.ui.admin_format import one_line
from belfry.server.ui.rendering import page
from belfry.server.ui.session import UiSession, UiSessionDep
from belfry.server.ui.uploads import read_text_upload
from belfry.services.channels import NamedChange
from belfry.services.job_files import (
    MAX_FILE_BYTES,
    JobFileError,
    LoadedJobs,
    Problem,
    calendars_named,
    dump_job_files,
    load_job_text,
)
from belfry.services.jobs import ApplyResult, JobChange

__all__ = ["apply_router"]

# What pasted text is called in problems; never shown (problems of pasted text have no file).
_PASTED = "<pasted>"
_ACTIONS = ("create", "update", "delete")
_UNSAFE_IN_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class FieldChange:
    name: str
    before: str
    after: str


@dataclass(frozen=True)
class ChangeRow:
    """One job, calendar, channel or group the apply creates, updates or deletes."""

    kind: str  # job | calendar | channel | group
    name: str
    action: str
    fields: list[FieldChange] = field(default_factory=list)
    link: str | None = None


@dataclass(frozen=True)
class Outcome:
    applied: bool
    rows: list[ChangeRow]
    counts: dict[str, int]
    unchanged: list[str]


def _problem_text(problem: Problem) -> str:
    """``12: jobs[0].schedule: …`` for pasted text; ``file:12: …`` for an uploaded file,
    exactly as ``belfry validate`` prints it."""
    if problem.file == _PASTED:
        return f"{problem.line}: {problem.field}: {problem.message}"
    return str(problem)


def _fields(pairs: dict[str, tuple[Any, Any]]) -> list[FieldChange]:
    return [FieldChange(name, one_line(old), one_line(new)) for name, (old, new) in pairs.items()]


def _named_fields(change: NamedChange) -> list[FieldChange]:
    before, after = change.before or {}, change.after or {}
    keys = [key for key in (*before, *after) if key != "name"]
    return _fields(
        {
            key: (before.get(key), after.get(key))
            for key in dict.fromkeys(keys)
            if before.get(key) != after.get(key)
        }
    )


def _outcome(request: ApplyRequest, result: ApplyResult) -> Outcome:
    documents = {str(spec.key): spec.to_document() for spec in request.jobs}
    rows: list[ChangeRow] = []
    unchanged: list[str] = []

    def job_row(change: JobChange) -> ChangeRow:
        if change.action == "create":
            shown = {k: v for k, v in documents[change.job].items() if k not in ("name", "group")}
            fields = _fields({key: (None, value) for key, value in shown.items()})
        else:
            fields = _fields(change.fields)
        link = None if change.action == "delete" else f"/jobs/{change.job}"
        return ChangeRow("job", change.job, change.action, fields, link)

    for change in result.changes:
        if change.action == "unchanged":
            unchanged.append(change.job)
        else:
            rows.append(job_row(change))
    for change in result.calendar_changes:
        if change.action == "unchanged":
            unchanged.append(f"calendar {change.job}")
        else:
            fields = _fields(change.fields)
            page_of = f"/calendars/{change.job}"
            rows.append(ChangeRow("calendar", change.job, change.action, fields, page_of))
    for kind, named in (("channel", result.channel_changes), ("group", result.group_changes)):
        for each in named:
            if each.action == "unchanged":
                unchanged.append(f"{kind} {each.name}")
            else:
                where = f"/channels/{each.name}" if kind == "channel" else None
                rows.append(ChangeRow(kind, each.name, each.action, _named_fields(each), where))
    counts = {action: sum(row.action == action for row in rows) for action in _ACTIONS}
    return Outcome(not result.dry_run, rows, counts, unchanged)


def _request_of(loaded: LoadedJobs, *, prune: bool, dry_run: bool) -> ApplyRequest:
    return ApplyRequest(
        jobs=loaded.jobs,
        calendars=loaded.calendars,
        channels=loaded.channels,
        groups=loaded.alert_groups,
        prune=prune,
        dry_run=dry_run,
        # A change made by hand: shown as drift from the files until they say the same.
        source="ui",
    )


def apply_router() -> APIRouter:
    ui = APIRouter(include_in_schema=False)

    @ui.get("/apply", response_class=HTMLResponse)
    async def apply_form(node: NodeDep, session: UiSessionDep, request: Request) -> HTMLResponse:
        groups = await _groups(node, session)
        return page(request, "apply.html", session, text="", prune=False, groups=groups)

    @ui.post("/apply", response_class=HTMLResponse)
    async def apply(
        node: NodeDep,
        session: UiSessionDep,
        request: Request,
        text: Annotated[str, Form(alias="yaml")] = "",
        upload: Annotated[UploadFile | None, File(alias="file")] = None,
        prune: Annotated[bool, Form()] = False,
        action: Annotated[str, Form()] = "preview",
        confirmed: Annotated[bool, Form()] = False,
    ) -> HTMLResponse:
        # Apply with prune, not yet confirmed: a dry run first, to see what it deletes.
        asking = action == "apply" and prune and not confirmed
        dry_run = action != "apply" or asking
        groups = await _groups(node, session)

        def answer(code: int = status.HTTP_200_OK, **context: Any) -> HTMLResponse:
            return page(
                request,
                "apply.html",
                session,
                status_code=code,
                text=text,
                prune=prune,
                dry_run=dry_run,
                groups=groups,
                **context,
            )

        if action == "open":
            # YAML carried here from another page (the crontab converter's "Open in
            # Apply"): into the text box, nothing previewed or applied yet.
            return answer()
        name, uploaded, unreadable = await read_text_upload(upload, MAX_FILE_BYTES)
        if unreadable is not None:
            return answer(status.HTTP_422_UNPROCESSABLE_ENTITY, problems=[unreadable])
        if uploaded is not None:
            # The file's text goes into the text box: what Apply sends next is what was
            # previewed, without choosing the file again.
            text = uploaded
        if not text.strip():
            return answer(
                status.HTTP_422_UNPROCESSABLE_ENTITY,
                problems=["Paste a job file, or choose one to upload."],
            )
        try:
            loaded = load_job_text(text, file=name or _PASTED)
        except JobFileError as error:
            problems = [_problem_text(problem) for problem in error.problems]
            return answer(status.HTTP_422_UNPROCESSABLE_ENTITY, problems=problems, source=name)
        body = _request_of(loaded, prune=prune, dry_run=dry_run)
        try:
            result = await apply_changes(node, session.principal, address_of(request), body)
            if asking and not _deletions(result):
                # Prune deletes nothing here: nothing to confirm, apply it as asked.
                body = _request_of(loaded, prune=prune, dry_run=False)
                result = await apply_changes(node, session.principal, address_of(request), body)
                asking = False
        except HTTPException as error:
            # Refused as the API refuses it (403 permissions, 422 references): nothing
            # applied; said on the page with the text kept for fixing.
            return answer(error.status_code, refusal=str(error.detail), source=name)
        # (The loader's warnings, calendars named but not in the text, are moot here: the
        # apply found them on the server, or refused.)
        return answer(outcome=_outcome(body, result), source=name, asking=asking)

    @ui.get("/export.yaml")
    async def export(
        node: NodeDep,
        session: UiSessionDep,
        group: Annotated[str, Query(max_length=200)] = "",
    ) -> Response:
        """The jobs the user may read (of ``group``), with the calendars they name; what
        ``belfry apply -f`` takes back unchanged. Secrets stay ``{keep: true}``."""
        readable = session.principal.readable_groups()
        if group:
            require(session.principal, Permission.READ, group)
        jobs = [
            job.spec
            for job in await node.jobs.list(group or None)
            if readable is None or job.key.group in readable
        ]
        stored = [record.spec for record in await node.jobs.list_calendars()]
        # Every calendar for a whole export (as `belfry export`); a group's, those it names.
        calendars = calendars_named(jobs, stored) if group else stored
        filename = "belfry-" + (_UNSAFE_IN_FILENAME.sub("_", group) or "jobs") + ".yaml"
        return Response(
            dump_job_files(jobs, calendars),
            media_type="application/yaml",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    return ui


def _deletions(result: ApplyResult) -> list[JobChange | NamedChange]:
    """What an apply deletes: jobs, calendars, channels, group settings."""
    changes: list[JobChange | NamedChange] = [
        *result.changes,
        *result.calendar_changes,
        *result.channel_changes,
        *result.group_changes,
    ]
    return [change for change in changes if change.action == "delete"]


async def _groups(node: Node, session: UiSession) -> list[str]:
    """The groups offered for a partial export: those of the jobs the user reads."""
    readable = session.principal.readable_groups()
    return sorted(
        {job.key.group for job in await node.jobs.list()} if readable is None else readable
    )
