"""Mounting the UI on the server's app: its pages, its static files, its error pages."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from belfry.server.ui.admin_pages import admin_router
from belfry.server.ui.backfill_pages import backfill_router
from belfry.server.ui.crontab_pages import crontab_router
from belfry.server.ui.dashboard_pages import dashboard_router
from belfry.server.ui.job_detail_pages import job_detail_router
from belfry.server.ui.job_pages import job_router
from belfry.server.ui.login_pages import login_router
from belfry.server.ui.maintenance_pages import maintenance_router
from belfry.server.ui.rendering import page
from belfry.server.ui.run_pages import run_router
from belfry.server.ui.session import LoginRequired

__all__ = ["mount_ui"]

_STATIC = Path(__file__).with_name("static")


def mount_ui(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=_STATIC), name="static")
    for router in (
        login_router(),
        dashboard_router(),
        job_router(),
        job_detail_router(),
        backfill_router(),
        run_router(),
        admin_router(),
        maintenance_router(),
        crontab_router(),
    ):
        app.include_router(router)
    app.add_exception_handler(LoginRequired, _to_login)
    app.add_exception_handler(StarletteHTTPException, _error_page)


async def _to_login(request: Request, error: Exception) -> Response:
    assert isinstance(error, LoginRequired)
    if request.headers.get("HX-Request"):
        # htmx follows HX-Redirect with a full page load (a 303 would land in a fragment).
        return Response(status_code=204, headers={"HX-Redirect": error.location})
    return RedirectResponse(error.location, status_code=303)


async def _error_page(request: Request, error: Exception) -> Response:
    """The API answers errors in JSON, as ever; a page answers with a page."""
    assert isinstance(error, StarletteHTTPException)
    if request.url.path.startswith(("/api/", "/static/")) or request.url.path in {
        "/healthz",
        "/readyz",
        "/metrics",
    }:
        return await http_exception_handler(request, error)
    return page(
        request,
        "error.html",
        None,
        status_code=error.status_code,
        status=error.status_code,
        detail=error.detail,
    )
