"""Templates and the small formatting rules every page shares."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from belfry import __version__
from belfry.core.drift import job_drift
from belfry.core.durations import format_duration
from belfry.server.ui.session import UiSession

__all__ = ["page", "templates"]

templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))


def _when(instant: datetime | None) -> str:
    """An instant as users read it in lists: UTC, to the second."""
    if instant is None:
        return "-"
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _iso(instant: datetime | None) -> str:
    return "" if instant is None else instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _ago(instant: datetime | None, now: datetime | None = None) -> str:
    """``3m ago`` / ``in 2h``: how far an instant is from now, roughly."""
    if instant is None:
        return ""
    delta = (now or datetime.now(UTC)) - instant
    seconds = abs(delta.total_seconds())
    rounded = timedelta(seconds=int(seconds) if seconds < 120 else int(seconds // 60) * 60)
    if seconds < 1:
        return "now"
    text = format_duration(rounded)
    return f"{text} ago" if delta.total_seconds() > 0 else f"in {text}"


def _took(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return ""
    seconds = ((end or datetime.now(UTC)) - start).total_seconds()
    if seconds < 10:
        return f"{seconds:.1f}s"
    return format_duration(timedelta(seconds=round(seconds)))


templates.env.filters["when"] = _when
templates.env.filters["iso"] = _iso
templates.env.filters["ago"] = _ago
templates.env.globals["took"] = _took
# How a job differs from what files last applied (GitOps drift), on its page.
templates.env.globals["drift_of"] = job_drift
templates.env.globals["version"] = __version__


def page(
    request: Request,
    template: str,
    session: UiSession | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render ``template`` with the session (user, CSRF token) and ``context``."""
    return templates.TemplateResponse(
        request,
        template,
        {"session": session, "user": session.principal if session else None, **context},
        status_code=status_code,
    )
