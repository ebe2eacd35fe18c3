"""What every endpoint may ask FastAPI for: this server's node, and the caller's token."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from belfry.core.records import TokenRecord
from belfry.server.node import Node

__all__ = ["NodeDep", "TokenDep"]

_bearer = HTTPBearer(auto_error=False)


def _node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


NodeDep = Annotated[Node, Depends(_node)]


async def _token(
    node: NodeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TokenRecord:
    """The caller's token (admin or worker); 401 without a valid one."""
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token = await node.tokens.authenticate(credentials.credentials)
    if token is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token


TokenDep = Annotated[TokenRecord, Depends(_token)]
