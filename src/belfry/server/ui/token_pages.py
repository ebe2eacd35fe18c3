"""API tokens (``/tokens``): the user's own, and for global admins worker tokens for given
pools (``belfry token create --role worker --pool P``), made and revoked as
``POST /api/v1/tokens`` and ``DELETE /api/v1/tokens/{id}`` do (``accounts_api.issue_token``
and ``revoke_token_by_id``: same checks, same audit entries).

A new token's secret is in the answer to its ``POST`` only: never in a URL, a redirect or
a later page, and that answer is not to be cached.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from belfry.core.names import NAME_RULE, is_valid_name
from belfry.core.records import TokenRecord
from belfry.server.account_schemas import NewTokenOut, TokenIn
from belfry.server.accounts_api import issue_token, revoke_token_by_id
from belfry.server.dependencies import NodeDep, address_of
from belfry.server.node import Node
from belfry.server.ui.rendering import page
from belfry.server.ui.session import UiSession, UiSessionDep

__all__ = ["token_router"]


async def _own_tokens(node: Node, session: UiSession) -> list[TokenRecord]:
    # -1 matches no user: an admin-token principal has no tokens of its own here.
    tokens = await node.tokens.all(session.principal.user_id or -1)
    return sorted(tokens, key=lambda token: token.id, reverse=True)


async def _worker_tokens(node: Node, session: UiSession) -> list[TokenRecord]:
    """Every worker token, for a global admin (who alone makes and revokes them)."""
    if not session.principal.global_admin:
        return []
    tokens = await node.tokens.all(None)
    return sorted(
        (token for token in tokens if token.role == "worker"),
        key=lambda token: token.id,
        reverse=True,
    )


def _pools(text: str) -> list[str]:
    """The pools of the form's field: names separated by commas or spaces, each once."""
    pools = list(dict.fromkeys(part for part in re.split(r"[\s,]+", text) if part))
    for pool in pools:
        if not is_valid_name(pool):
            raise ValueError(f"pools: {pool!r} is not a pool name: {NAME_RULE}")
    if not pools:
        raise ValueError("pools: name at least one pool")
    return pools


def _state(token: TokenRecord, now: datetime) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "active"


def _first_error(error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "token"
    field = {"expires_in_days": "expires in (days)"}.get(where, where)
    return f"{field}: {first['msg']}"


def token_router() -> APIRouter:
    ui = APIRouter(include_in_schema=False)

    async def tokens_page(
        node: Node,
        session: UiSession,
        request: Request,
        *,
        status_code: int = status.HTTP_200_OK,
        created: NewTokenOut | None = None,
        error: str | None = None,
        name: str = "",
        expires: str = "",
        pools: str = "",
        worker_form: bool = False,
        revoked: int | None = None,
    ) -> HTMLResponse:
        now = datetime.now(UTC)
        tokens = await _own_tokens(node, session)
        workers = await _worker_tokens(node, session)
        response = page(
            request,
            "tokens.html",
            session,
            status_code=status_code,
            tokens=[(token, _state(token, now)) for token in tokens],
            worker_tokens=[(token, _state(token, now)) for token in workers],
            created=created,
            error=error,
            name=name,
            expires=expires,
            pools=pools,
            worker_form=worker_form,
            revoked=revoked,
        )
        if created is not None:
            # The one answer holding the secret: kept by no cache, shown again by no Back.
            response.headers["Cache-Control"] = "no-store"
        return response

    @ui.get("/tokens", response_class=HTMLResponse)
    async def tokens(
        node: NodeDep, session: UiSessionDep, request: Request, revoked: int | None = None
    ) -> HTMLResponse:
        return await tokens_page(node, session, request, revoked=revoked)

    async def create(
        node: Node,
        session: UiSession,
        request: Request,
        *,
        name: str,
        expires_in_days: str,
        pools: str = "",
        worker: bool = False,
    ) -> HTMLResponse:
        """Make a token as the API does; the page again with the secret, or with what is
        wrong next to the form it came from."""

        async def page_again(message: str, code: int) -> HTMLResponse:
            return await tokens_page(
                node,
                session,
                request,
                status_code=code,
                error=message,
                name=name,
                expires=expires_in_days,
                pools=pools,
                worker_form=worker,
            )

        try:
            chosen = _pools(pools) if worker else []
        except ValueError as error:
            return await page_again(str(error), status.HTTP_422_UNPROCESSABLE_ENTITY)
        try:
            body = TokenIn(
                name=name.strip(),
                role="worker" if worker else "user",
                pools=chosen,
                expires_in_days=float(expires_in_days) if expires_in_days.strip() else None,
            )
        except ValueError as error:  # a ValidationError, or a number that is not one
            message = (
                _first_error(error)
                if isinstance(error, ValidationError)
                else f"expires in (days): not a number: {expires_in_days.strip()!r}"
            )
            return await page_again(message, status.HTTP_422_UNPROCESSABLE_ENTITY)
        try:
            created = await issue_token(node, session.principal, address_of(request), body)
        except HTTPException as error:
            return await page_again(str(error.detail), error.status_code)
        return await tokens_page(node, session, request, created=created)

    @ui.post("/tokens", response_class=HTMLResponse)
    async def create_token(
        node: NodeDep,
        session: UiSessionDep,
        request: Request,
        name: Annotated[str, Form(max_length=1000)] = "",
        expires_in_days: Annotated[str, Form(max_length=50)] = "",
    ) -> HTMLResponse:
        return await create(node, session, request, name=name, expires_in_days=expires_in_days)

    @ui.post("/tokens/worker", response_class=HTMLResponse)
    async def create_worker_token(
        node: NodeDep,
        session: UiSessionDep,
        request: Request,
        name: Annotated[str, Form(max_length=1000)] = "",
        pools: Annotated[str, Form(max_length=5000)] = "",
        expires_in_days: Annotated[str, Form(max_length=50)] = "",
    ) -> HTMLResponse:
        """A worker token for ``pools`` (global admins: ``issue_token`` refuses others)."""
        return await create(
            node,
            session,
            request,
            name=name,
            expires_in_days=expires_in_days,
            pools=pools,
            worker=True,
        )

    @ui.post("/tokens/{token_id}/revoke")
    async def revoke_token(
        node: NodeDep, session: UiSessionDep, request: Request, token_id: int
    ) -> Response:
        await revoke_token_by_id(node, session.principal, address_of(request), token_id)
        return RedirectResponse(
            f"/tokens?revoked={token_id}", status_code=status.HTTP_303_SEE_OTHER
        )

    return ui
