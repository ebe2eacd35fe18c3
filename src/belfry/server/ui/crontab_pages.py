"""Crontabs to jobs YAML in the browser: ``/import-crontab``, what ``belfry import-crontab``
does.

Paste a crontab or upload one, say whether it is a user crontab (``crontab -l``; the jobs
run as the user given) or a system one (``/etc/crontab``, ``/etc/cron.d/*``; each line
names its user), and Convert shows the YAML of ``services.crontab_import`` with its
comments, and the lines it did not carry over. Converting changes nothing on the server,
so any logged-in user may. "Open in Apply" posts the YAML to ``/apply`` (``action=open``),
where it is previewed and applied with the permissions and audit of an apply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile, status
from fastapi.responses import HTMLResponse

from belfry.core.names import NAME_RULE, is_valid_name
from belfry.core.schedules import ScheduleError, parse_timezone
from belfry.server.ui.rendering import page
from belfry.server.ui.session import UiSessionDep
from belfry.server.ui.uploads import read_text_upload
from belfry.services.crontab_import import (
    CrontabImportError,
    CrontabSource,
    import_crontabs,
)

__all__ = ["crontab_router"]

# What pasted text is called in the YAML's comments ("crontab:6: @reboot …"); on the page
# its lines are "line 6".
_PASTED = "crontab"
# As the CLI reads files: a crontab is never this large.
_MAX_BYTES = 1024 * 1024
_KINDS = ("user", "system")


@dataclass(frozen=True)
class CrontabForm:
    """What the form holds, given back as it was sent."""

    text: str = ""
    kind: str = "user"
    group: str = "default"
    run_as: str = ""
    timezone: str = "UTC"
    skip_invalid: bool = False


@dataclass(frozen=True)
class LineMessage:
    """A problem or a skipped line: ``where`` (``line 3``, or ``FILE:3`` for an upload),
    the message, and the line as written (empty for a problem of no line)."""

    where: str
    message: str
    line: str = ""

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


def _located(text: str, name: str, crontab: str) -> LineMessage:
    """A converter's ``NAME:LINE: message`` as the page says it, with the line's text."""
    found = re.match(rf"{re.escape(name)}:(\d+): (.*)", text, re.DOTALL)
    if found is None:
        return LineMessage("", text)
    number = int(found.group(1))
    lines = crontab.splitlines()
    line = lines[number - 1].strip() if 0 < number <= len(lines) else ""
    where = f"line {number}" if name == _PASTED else f"{name}:{number}"
    return LineMessage(where, found.group(2), line)


def _option_problems(form: CrontabForm) -> list[str]:
    """The form's own mistakes, said with its labels (the converter says ``--group``)."""
    problems: list[str] = []
    if form.kind not in _KINDS:
        problems.append(f"Kind: {form.kind!r} is neither a user nor a system crontab")
    if not is_valid_name(form.group):
        problems.append(f"Group: {form.group!r} is not a group name ({NAME_RULE})")
    if form.kind == "system" and form.run_as:
        problems.append(
            "Run as: a system crontab names the user on each line; "
            "leave Run as empty or choose a user crontab"
        )
    elif any(char.isspace() for char in form.run_as):
        problems.append(f"Run as: {form.run_as!r} is not a user name")
    try:
        parse_timezone(form.timezone)
    except ScheduleError as error:
        problems.append(f"Time zone: {error}")
    return problems


def crontab_router() -> APIRouter:
    ui = APIRouter(include_in_schema=False)

    @ui.get("/import-crontab", response_class=HTMLResponse)
    async def crontab_form(session: UiSessionDep, request: Request) -> HTMLResponse:
        return page(request, "crontab.html", session, form=CrontabForm())

    @ui.post("/import-crontab", response_class=HTMLResponse)
    async def convert(
        session: UiSessionDep,
        request: Request,
        text: Annotated[str, Form(alias="crontab")] = "",
        upload: Annotated[UploadFile | None, File(alias="file")] = None,
        kind: Annotated[str, Form()] = "user",
        group: Annotated[str, Form()] = "default",
        run_as: Annotated[str, Form()] = "",
        timezone: Annotated[str, Form()] = "UTC",
        skip_invalid: Annotated[bool, Form()] = False,
    ) -> HTMLResponse:
        name, uploaded, unreadable = await read_text_upload(upload, _MAX_BYTES)
        if uploaded is not None:
            # The file's text goes into the text box, as on the apply page: converting
            # again (another group, skipping invalid lines) needs no new upload.
            text = uploaded
        form = CrontabForm(
            text=text,
            kind=kind,
            group=group.strip() or "default",
            run_as=run_as.strip(),
            timezone=timezone.strip() or "UTC",
            skip_invalid=skip_invalid,
        )

        def answer(code: int = status.HTTP_200_OK, **context: Any) -> HTMLResponse:
            return page(request, "crontab.html", session, status_code=code, form=form, **context)

        def refuse(problems: list[LineMessage]) -> HTMLResponse:
            return answer(status.HTTP_422_UNPROCESSABLE_ENTITY, problems=problems, source=name)

        if unreadable is not None:
            return refuse([LineMessage("", unreadable)])
        if not text.strip():
            return refuse([LineMessage("", "Paste a crontab, or choose a file to upload.")])
        if len(text.encode("utf-8", "surrogatepass")) > _MAX_BYTES:
            return refuse([LineMessage("", "The crontab is larger than 1 MiB: not a crontab.")])
        options = _option_problems(form)
        if options:
            return refuse([LineMessage("", problem) for problem in options])
        source = name or _PASTED
        try:
            result = import_crontabs(
                [CrontabSource(source, text, system=form.kind == "system")],
                group=form.group,
                run_as=form.run_as or None,
                timezone=form.timezone,
                skip_invalid=form.skip_invalid,
            )
        except CrontabImportError as error:
            return refuse([_located(problem, source, text) for problem in error.problems])
        except RuntimeError as error:
            # The converter refused its own YAML: a bug, said on the page, not a traceback.
            return answer(
                status.HTTP_500_INTERNAL_SERVER_ERROR,
                problems=[LineMessage("", str(error))],
                source=name,
            )
        skipped = [_located(warning, source, text) for warning in result.warnings]
        return answer(yaml=result.yaml, jobs=result.jobs, skipped=skipped, source=name)

    return ui
