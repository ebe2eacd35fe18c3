"""Logging in and out of the web UI: a form, the same checks as ``POST /api/v1/login``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from belfry.server.dependencies import SESSION_COOKIE, NodeDep, address_of, set_session_cookie
from belfry.server.ui.rendering import page
from belfry.server.ui.session import UiSessionDep, safe_next

__all__ = ["login_router"]


def login_router() -> APIRouter:
    ui = APIRouter(include_in_schema=False)

    @ui.get("/login", response_class=HTMLResponse)
    async def login_form(node: NodeDep, request: Request, next: str = "/") -> HTMLResponse:
        return page(request, "login.html", None, next=safe_next(next), sso=node.sso is not None)

    @ui.post("/login", response_model=None)
    async def log_in(
        node: NodeDep,
        request: Request,
        name: Annotated[str, Form(max_length=100)],
        password: Annotated[str, Form(max_length=1000)],
        next: Annotated[str, Form()] = "/",
    ) -> Response:
        address = address_of(request) or "-"
        target = safe_next(next)

        def refused(message: str, code: int) -> HTMLResponse:
            return page(
                request,
                "login.html",
                None,
                status_code=code,
                next=target,
                name=name,
                error=message,
                sso=node.sso is not None,
            )

        wait = node.login_throttle.wait_seconds(address, name)
        if wait > 0:
            return refused(f"Too many failed logins: try again in {wait:.0f}s.", 429)
        login = await node.accounts.log_in(name, password)
        if login is None:
            node.login_throttle.failed(address, name)
            await node.audit.record(name, "login.failed", address=address)
            return refused("Wrong user name or password.", status.HTTP_401_UNAUTHORIZED)
        node.login_throttle.succeeded(address, name)
        await node.audit.record(login.principal, "login", address=address)
        response = RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
        set_session_cookie(response, request, login.session)
        return response

    @ui.post("/logout")
    async def log_out(node: NodeDep, request: Request, session: UiSessionDep) -> Response:
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie is not None:
            await node.accounts.log_out(cookie)
            await node.audit.record(session.principal, "logout", address=address_of(request))
        response = RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    return ui
