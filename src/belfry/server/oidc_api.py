"""``/api/v1/oidc``: logging in through the OpenID Connect identity provider (issue 6).

Browser endpoints, not JSON API calls (so they are left out of the OpenAPI document):
``/login`` sends the browser to the provider, ``/callback`` is where the provider sends
it back. Both answer anyone: they are how one gets credentials.

Cookies, and why their SameSite differ. The return from the provider is a cross-site
navigation, on which browsers withhold SameSite=Strict cookies; the login in progress
therefore travels in a SameSite=Lax cookie (sent on top-level GET navigations, which is
all the callback is), scoped to ``/api/v1/oidc`` and good for 10 minutes. The session
cookie stays SameSite=Strict, as ``/api/v1/login`` sets it, so the callback does not
redirect: a redirect would still belong to the provider's cross-site navigation, and the
first page would load without the new session. It answers a small page that moves on
itself (``<meta http-equiv="refresh">``), a same-site navigation that carries the cookie.
"""

from __future__ import annotations

import html
import logging

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from belfry.server.dependencies import SESSION_COOKIE, NodeDep, address_of
from belfry.services.accounts import SESSION_LIFETIME, Login
from belfry.services.oidc_login import (
    LOGIN_TIMEOUT,
    LoginInvalid,
    LoginRefused,
    ProviderUnavailable,
    SingleSignOn,
    SsoError,
)

__all__ = ["CSRF_COOKIE", "STATE_COOKIE", "oidc_router"]

log = logging.getLogger(__name__)

STATE_COOKIE = "belfry_oidc"
# The session's CSRF token where the page's scripts can read it (not HttpOnly): a session
# begun by a redirect has no JSON answer to carry it, as /api/v1/login's does. Another
# site can neither read it nor make a browser send it (SameSite=Strict).
CSRF_COOKIE = "belfry_csrf"
_PREFIX = "/api/v1/oidc"
# Nothing of a login may be cached, nor its URL (which holds the code) sent onwards.
_PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def oidc_router() -> APIRouter:
    api = APIRouter(prefix=_PREFIX, include_in_schema=False)

    @api.get("/login")
    async def login(node: NodeDep, request: Request, next: str = "/") -> Response:
        """Redirect to the identity provider; ``next``: the path to go to once logged in."""
        sso = _configured(node.sso)
        try:
            url, sealed = await sso.begin(next)
        except SsoError as error:
            return _refusal(error)
        response = RedirectResponse(url, status.HTTP_302_FOUND, headers=_PRIVATE)
        response.set_cookie(
            STATE_COOKIE,
            sealed,
            max_age=int(LOGIN_TIMEOUT.total_seconds()),
            path=_PREFIX,
            httponly=True,
            secure=_secure(request, sso),
            samesite="lax",
        )
        return response

    @api.get("/callback")
    async def callback(
        node: NodeDep,
        request: Request,
        code: str | None = None,
        state: str | None = None,
        error: str | None = None,
        error_description: str | None = None,
    ) -> Response:
        """The provider sends the browser back here: a session, then on to ``next``."""
        sso = _configured(node.sso)
        response: Response
        try:
            login, next_path = await sso.finish(
                sealed=request.cookies.get(STATE_COOKIE),
                state=state,
                code=code,
                error=error,
                error_description=error_description,
                address=address_of(request),
            )
        except SsoError as refused:
            response = _refusal(refused)
        else:
            response = _bounce(next_path)
            _start_session(response, login, secure=_secure(request, sso))
        # A login in progress is used once, whatever came of it.
        response.delete_cookie(STATE_COOKIE, path=_PREFIX)
        return response

    return api


def _configured(sso: SingleSignOn | None) -> SingleSignOn:
    if sso is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            "single sign-on is not configured on this server (oidc: in belfry server --config)",
        )
    return sso


def _secure(request: Request, sso: SingleSignOn) -> bool:
    # Behind a proxy that ends TLS the request itself is plain HTTP: the public redirect
    # URI tells whether browsers speak HTTPS to us.
    return request.url.scheme == "https" or sso.redirect_uri.startswith("https://")


def _refusal(error: SsoError) -> JSONResponse:
    code = status.HTTP_400_BAD_REQUEST
    if isinstance(error, LoginRefused):
        code = status.HTTP_403_FORBIDDEN
    elif isinstance(error, ProviderUnavailable):
        code = status.HTTP_502_BAD_GATEWAY
    elif not isinstance(error, LoginInvalid):  # pragma: no cover - every kind is above
        code = status.HTTP_500_INTERNAL_SERVER_ERROR
    log.warning("single sign-on login failed (%d): %s", code, error)
    return JSONResponse({"detail": str(error)}, code, headers=_PRIVATE)


def _bounce(next_path: str) -> HTMLResponse:
    """A page that goes on to ``next_path`` by itself (see the module's docstring)."""
    target = html.escape(next_path, quote=True)
    page = (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="0;url={target}">'
        "<title>Belfry: logged in</title></head>"
        f'<body><p>Logged in. <a href="{target}">Continue</a></p></body></html>\n'
    )
    return HTMLResponse(
        page,
        headers={**_PRIVATE, "Content-Security-Policy": "default-src 'none'"},
    )


def _start_session(response: Response, login: Login, *, secure: bool) -> None:
    """The same session cookie as ``POST /api/v1/login`` sets, and its CSRF token."""
    lifetime = int(SESSION_LIFETIME.total_seconds())
    response.set_cookie(
        SESSION_COOKIE,
        login.session,
        max_age=lifetime,
        httponly=True,
        secure=secure,
        samesite="strict",
        path="/",
    )
    response.set_cookie(
        CSRF_COOKIE,
        login.csrf_token,
        max_age=lifetime,
        httponly=False,
        secure=secure,
        samesite="strict",
        path="/",
    )
