"""Authentication before anything else, as a pure ASGI middleware.

FastAPI reads and validates a request's body before it resolves the endpoint's
dependencies, so without this an anonymous caller with a malformed body would be told
about the body (422) instead of being refused (401), and a worker token on a user
endpoint likewise. Here every ``/api/v1`` request but the public ones is authenticated
first; the endpoint's ``CallerDep`` then reads the answer from the request state.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from belfry.server.dependencies import authenticate
from belfry.server.node import Node

__all__ = ["Authentication", "is_public"]

_API = "/api/v1/"
_PUBLIC = frozenset({"/api/v1/login", "/api/v1/openapi.json", "/api/v1/docs"})
_PUBLIC_PREFIXES = ("/api/v1/docs/", "/api/v1/oidc/")
# What a worker token may call besides the worker protocol.
_WORKER_ALSO = frozenset({"/api/v1/me", "/api/v1/logout"})


def is_public(path: str) -> bool:
    return path in _PUBLIC or path.startswith(_PUBLIC_PREFIXES)


class Authentication:
    def __init__(self, app: ASGIApp, node: Node) -> None:
        self.app = app
        self.node = node

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(_API) or is_public(path):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            principal = await authenticate(self.node, request)
        except HTTPException as refusal:
            await _answer(send, refusal.status_code, refusal.detail, refusal.headers)
            return
        except ConnectionError as error:  # the database is away: the caller may retry
            await _answer(send, 503, str(error), {"Retry-After": "1"})
            return
        if principal.is_worker and not (
            path.startswith("/api/v1/workers/") or path in _WORKER_ALSO
        ):
            await _answer(send, 403, "a worker token may not use this endpoint", None)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


async def _answer(send: Send, status: int, detail: str, headers: Mapping[str, str] | None) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(key.lower().encode(), value.encode()) for key, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
