"""Who is looking: the browser session behind a page, and the CSRF check of its actions.

A page without a valid session redirects to ``/login?next=PATH``. An action (any
non-GET request) must carry the session's CSRF token, in the ``X-CSRF-Token`` header
(htmx sends it from the page's ``hx-headers``) or in a ``csrf_token`` form field (the
same forms without JavaScript).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, status

from belfry.core.permissions import Principal
from belfry.server.dependencies import CSRF_HEADER, SESSION_COOKIE, NodeDep

__all__ = ["LoginRequired", "UiSession", "UiSessionDep", "safe_next"]

_SAFE_METHODS = frozenset({"GET", "HEAD"})


class LoginRequired(Exception):
    """Raised by pages without a session; answered with a redirect to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path

    @property
    def location(self) -> str:
        return f"/login?next={quote(self.next_path, safe='/')}"


@dataclass(frozen=True)
class UiSession:
    principal: Principal
    csrf_token: str


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a path on this server only (no open redirects)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


async def _session(request: Request, node: NodeDep) -> UiSession:
    cookie = request.cookies.get(SESSION_COOKIE)
    found = await node.accounts.session(cookie) if cookie else None
    if found is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(path if request.method in _SAFE_METHODS else "/")
    principal, csrf = found
    if request.method not in _SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER)
        if sent is None:
            form = await request.form()
            field = form.get("csrf_token")
            sent = field if isinstance(field, str) else ""
        if not secrets.compare_digest(sent.encode(), csrf.encode()):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token")
    return UiSession(principal, csrf)


UiSessionDep = Annotated[UiSession, Depends(_session)]
