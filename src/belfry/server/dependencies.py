"""What every endpoint may ask FastAPI for: this server's node, and who is calling.

A caller is a bearer token (``Authorization: Bearer …``) or a browser session (the
``belfry_session`` cookie). A session's state-changing requests must carry its CSRF token
in the ``X-CSRF-Token`` header: a cookie alone, which another site can make a browser
send, changes nothing. Bearer requests need no CSRF token (no browser sends one by itself).
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Response, status
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from belfry.core.permissions import Permission, Principal
from belfry.server.node import Node
from belfry.services.accounts import SESSION_LIFETIME

__all__ = [
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "CallerDep",
    "NodeDep",
    "UserDep",
    "WorkerCallerDep",
    "address_of",
    "authenticate",
    "require",
    "require_global_admin",
    "set_session_cookie",
]

SESSION_COOKIE = "belfry_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_bearer = HTTPBearer(auto_error=False)
_session_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False)


def _node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


NodeDep = Annotated[Node, Depends(_node)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def authenticate(node: Node, request: Request) -> Principal:
    """Who is calling: a bearer token, or a session (whose state-changing requests must
    carry its CSRF token). Raises 401 (no or bad credentials) or 403 (no CSRF token).
    The authentication middleware calls it before the body is read; endpoints get its
    answer from ``CallerDep``."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if header:
        if scheme.lower() != "bearer" or not credentials.strip():
            raise _unauthorized("the Authorization header must be: Bearer <token>")
        principal = await node.tokens.authenticate(credentials.strip())
        if principal is None:
            raise _unauthorized("invalid, expired or revoked token")
        return principal
    session = request.cookies.get(SESSION_COOKIE)
    if session is not None:
        found = await node.accounts.session(session)
        if found is None:
            raise _unauthorized("session expired: log in again")
        principal, csrf = found
        if request.method not in _SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not secrets.compare_digest(sent.encode(), csrf.encode()):
                raise HTTPException(
                    status.HTTP_403_FORBIDDEN, f"missing or wrong {CSRF_HEADER} header"
                )
        return principal
    raise _unauthorized("missing bearer token or session")


async def _caller(
    request: Request,
    node: NodeDep,
    # Declared for the OpenAPI document (security schemes); read by authenticate().
    _bearer_credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    _session: Annotated[str | None, Depends(_session_cookie)],
) -> Principal:
    """Who is calling; 401 without valid credentials."""
    known = getattr(request.state, "principal", None)
    if isinstance(known, Principal):
        return known
    return await authenticate(node, request)


CallerDep = Annotated[Principal, Depends(_caller)]


async def _user(caller: CallerDep) -> Principal:
    """A person (or an admin token): a worker token may only speak the worker protocol."""
    if caller.is_worker:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a worker token may not use this endpoint")
    return caller


UserDep = Annotated[Principal, Depends(_user)]


async def _worker_caller(caller: CallerDep) -> Principal:
    if not caller.is_worker and not caller.global_admin:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "only worker tokens (or global admins) speak to workers"
        )
    return caller


WorkerCallerDep = Annotated[Principal, Depends(_worker_caller)]


def require(caller: Principal, permission: Permission, group: str) -> None:
    """403 unless ``caller`` has ``permission`` on ``group``."""
    if not caller.can(permission, group):
        role = permission.least_role.value
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"{caller.name} may not {permission.value} group {group!r} (needs {role})",
        )


def require_global_admin(caller: Principal) -> None:
    if not caller.global_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"{caller.name} is not a global admin")


def set_session_cookie(response: Response, request: Request, value: str) -> None:
    """The browser session's cookie: HttpOnly, SameSite=Strict, Secure over HTTPS (served
    here, or ended by a trusted proxy that says so in X-Forwarded-Proto)."""
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        httponly=True,
        secure=request.url.scheme == "https",
        samesite="strict",
        path="/",
    )


def address_of(request: Request) -> str | None:
    """The caller's address: the connection's peer, or the client a trusted proxy
    (``forwarded_allow_ips``) names in X-Forwarded-For; nobody else's headers count."""
    return request.client.host if request.client else None
