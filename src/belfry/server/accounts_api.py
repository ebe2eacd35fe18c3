"""``/api/v1`` for accounts: login and sessions, users, grants, tokens, the audit log.

Users and worker or admin tokens are for global admins; a group's admins manage the
grants on their group; everyone manages their own password and tokens and reads the audit
entries of the groups they can read.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from belfry.core.permissions import ALL_GROUPS, Permission, Principal, Role
from belfry.core.records import TokenRecord
from belfry.server.account_schemas import (
    AuditOut,
    GrantIn,
    GrantOut,
    LoginIn,
    LoginOut,
    MeOut,
    NewTokenOut,
    PasswordIn,
    TokenIn,
    TokenOut,
    UserIn,
    UserOut,
    UserPatch,
)
from belfry.server.dependencies import (
    SESSION_COOKIE,
    CallerDep,
    NodeDep,
    UserDep,
    address_of,
    require,
    require_global_admin,
    set_session_cookie,
)
from belfry.server.node import Node
from belfry.server.schemas import ERROR_RESPONSES
from belfry.services.accounts import AccountError, UnknownUser

__all__ = ["accounts_router", "issue_token", "revoke_token_by_id"]


def _bad(error: AccountError) -> HTTPException:
    if isinstance(error, UnknownUser):
        return HTTPException(status.HTTP_404_NOT_FOUND, str(error))
    return HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(error))


def accounts_router() -> APIRouter:
    api = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)

    # -- login ------------------------------------------------------------------------------
    @api.post("/login", response_model=LoginOut)
    async def login(node: NodeDep, request: Request, response: Response, body: LoginIn) -> LoginOut:
        """Start a browser session: sets an HttpOnly, SameSite=Strict cookie (Secure over
        HTTPS) and returns the CSRF token its state-changing calls must carry."""
        address = address_of(request) or "-"
        wait = node.login_throttle.wait_seconds(address, body.name)
        if wait > 0:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                f"too many failed logins: try again in {wait:.0f}s",
                headers={"Retry-After": str(max(1, round(wait)))},
            )
        login = await node.accounts.log_in(body.name, body.password)
        if login is None:
            node.login_throttle.failed(address, body.name)
            await node.audit.record(body.name, "login.failed", address=address)
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong user name or password")
        node.login_throttle.succeeded(address, body.name)
        await node.audit.record(login.principal, "login", address=address)
        set_session_cookie(response, request, login.session)
        return LoginOut(**MeOut.of(login.principal).model_dump(), csrf_token=login.csrf_token)

    @api.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
    async def logout(
        node: NodeDep, caller: CallerDep, request: Request, response: Response
    ) -> None:
        """End this browser session (a bearer token stays valid: revoke it instead)."""
        session = request.cookies.get(SESSION_COOKIE)
        if session is not None:
            await node.accounts.log_out(session)
            await node.audit.record(caller, "logout", address=address_of(request))
        response.delete_cookie(SESSION_COOKIE, path="/")

    @api.get("/me", response_model=MeOut)
    async def me(caller: CallerDep) -> MeOut:
        """Who the credentials stand for, and their roles."""
        return MeOut.of(caller)

    # -- users ------------------------------------------------------------------------------
    @api.get("/users", response_model=list[UserOut])
    async def list_users(node: NodeDep, caller: UserDep) -> list[UserOut]:
        """Every user (global admins, and group admins choosing whom to grant)."""
        if not caller.global_admin and Role.ADMIN not in caller.grants.values():
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"{caller.name} administers no group")
        return [UserOut.of(user) for user in await node.accounts.all()]

    @api.post("/users", response_model=UserOut, status_code=status.HTTP_201_CREATED)
    async def create_user(
        node: NodeDep, caller: UserDep, request: Request, body: UserIn
    ) -> UserOut:
        require_global_admin(caller)
        try:
            user = await node.accounts.create_user(
                body.name, body.password, global_admin=body.global_admin
            )
        except AccountError as error:
            raise _bad(error) from None
        await node.audit.record(
            caller,
            "user.create",
            address=address_of(request),
            target=user.name,
            after={"global_admin": user.global_admin},
        )
        return UserOut.of(user)

    @api.patch("/users/{name}", response_model=UserOut)
    async def update_user(
        node: NodeDep, caller: UserDep, request: Request, name: str, body: UserPatch
    ) -> UserOut:
        """Disable or enable a user, make or unmake a global admin."""
        require_global_admin(caller)
        try:
            before = await node.accounts.get(name)
            if before.global_admin and (body.disabled or body.global_admin is False):
                await _keep_an_admin(node, name)
            user = await node.accounts.update(
                name, disabled=body.disabled, global_admin=body.global_admin
            )
        except AccountError as error:
            raise _bad(error) from None
        await node.audit.record(
            caller,
            "user.update",
            address=address_of(request),
            target=name,
            before={"disabled": before.disabled, "global_admin": before.global_admin},
            after={"disabled": user.disabled, "global_admin": user.global_admin},
        )
        return UserOut.of(user)

    @api.put("/users/{name}/password", status_code=status.HTTP_204_NO_CONTENT)
    async def set_password(
        node: NodeDep, caller: UserDep, request: Request, name: str, body: PasswordIn
    ) -> None:
        """A new password (your own, or anyone's for a global admin); ends the user's
        sessions."""
        if caller.name != name or caller.user_id is None:
            require_global_admin(caller)
        try:
            await node.accounts.update(name, password=body.password)
        except AccountError as error:
            raise _bad(error) from None
        await node.audit.record(caller, "user.password", address=address_of(request), target=name)

    @api.delete("/users/{name}", status_code=status.HTTP_204_NO_CONTENT)
    async def delete_user(node: NodeDep, caller: UserDep, request: Request, name: str) -> None:
        """Delete a user with their grants, tokens and sessions."""
        require_global_admin(caller)
        try:
            user = await node.accounts.get(name)
            if user.global_admin:
                await _keep_an_admin(node, name)
            await node.accounts.delete(name)
        except AccountError as error:
            raise _bad(error) from None
        await node.audit.record(
            caller,
            "user.delete",
            address=address_of(request),
            target=name,
            before={"global_admin": user.global_admin},
        )

    # -- grants -----------------------------------------------------------------------------
    @api.get("/grants", response_model=list[GrantOut])
    async def list_grants(
        node: NodeDep, caller: UserDep, user: str | None = None, group: str | None = None
    ) -> list[GrantOut]:
        """Grants a global admin sees all of; a group admin those on their groups; anyone
        their own."""
        try:
            grants = await node.accounts.grants(user)
        except AccountError as error:
            raise _bad(error) from None
        visible = [
            grant
            for grant in grants
            if caller.global_admin
            or grant.user == caller.name
            or (grant.group != ALL_GROUPS and caller.can(Permission.ADMINISTER, grant.group))
        ]
        if group is not None:
            visible = [grant for grant in visible if grant.group == group]
        return [GrantOut.of(grant) for grant in visible]

    @api.put("/grants/{user}/{group}", response_model=GrantOut)
    async def set_grant(
        node: NodeDep, caller: UserDep, request: Request, user: str, group: str, body: GrantIn
    ) -> GrantOut:
        """Give ``user`` a role on ``group`` (``*``: all groups, global admins only)."""
        _may_grant(caller, group)
        try:
            grant = await node.accounts.grant(user, group, body.role.value)
        except AccountError as error:
            raise _bad(error) from None
        await node.audit.record(
            caller,
            "grant.set",
            address=address_of(request),
            group=None if group == ALL_GROUPS else group,
            target=f"{user} on {group}",
            after={"role": grant.role},
        )
        return GrantOut.of(grant)

    @api.delete("/grants/{user}/{group}", status_code=status.HTTP_204_NO_CONTENT)
    async def remove_grant(
        node: NodeDep, caller: UserDep, request: Request, user: str, group: str
    ) -> None:
        _may_grant(caller, group)
        try:
            removed = await node.accounts.revoke_grant(user, group)
        except AccountError as error:
            raise _bad(error) from None
        if not removed:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{user} holds no role on {group}")
        await node.audit.record(
            caller,
            "grant.remove",
            address=address_of(request),
            group=None if group == ALL_GROUPS else group,
            target=f"{user} on {group}",
        )

    # -- tokens -----------------------------------------------------------------------------
    @api.get("/tokens", response_model=list[TokenOut])
    async def list_tokens(node: NodeDep, caller: UserDep) -> list[TokenOut]:
        """Your tokens; every token for a global admin. Never their secrets."""
        tokens = await node.tokens.all(None if caller.global_admin else caller.user_id or -1)
        return await _tokens_out(node, tokens)

    @api.post("/tokens", response_model=NewTokenOut, status_code=status.HTTP_201_CREATED)
    async def create_token(
        node: NodeDep, caller: UserDep, request: Request, body: TokenIn
    ) -> NewTokenOut:
        """A token acting as you (``role: user``), or, for a global admin, a worker token
        for pools or an admin token. The secret is in this answer only."""
        return await issue_token(node, caller, address_of(request), body)

    @api.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
    async def revoke_token(node: NodeDep, caller: UserDep, request: Request, token_id: int) -> None:
        """Revoke a token (yours, or any for a global admin): refused from now on."""
        await revoke_token_by_id(node, caller, address_of(request), token_id)

    # -- audit ------------------------------------------------------------------------------
    @api.get("/audit", response_model=list[AuditOut])
    async def audit(
        node: NodeDep,
        caller: UserDep,
        group: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        before: int | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[AuditOut]:
        """Changes and actions, newest first: all for global admins, those about the
        groups they read for everyone else. ``action`` matches sub-actions (``job``)."""
        if since is not None and since.tzinfo is None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_ENTITY, "since: give a time zone, e.g. ...Z"
            )
        records = await node.audit.query(
            caller,
            group=group,
            actor=actor,
            action=action,
            since=since,
            before_id=before,
            limit=limit,
        )
        return [AuditOut.of(record) for record in records]

    return api


def _may_grant(caller: Principal, group: str) -> None:
    if group == ALL_GROUPS:
        require_global_admin(caller)
    else:
        require(caller, Permission.ADMINISTER, group)


async def _keep_an_admin(node: Node, leaving: str) -> None:
    """Refuse to remove the last global admin who can log in: nobody could manage users."""
    others = [
        user
        for user in await node.accounts.all()
        if user.global_admin and not user.disabled and user.name != leaving
    ]
    if not others:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"{leaving} is the last global admin: make another first"
        )


async def issue_token(
    node: Node, caller: Principal, address: str | None, body: TokenIn
) -> NewTokenOut:
    """A new token, audited: one acting as ``caller`` (``role: user``; 422 for an admin
    token, which has no user), or, for a global admin (403), a worker or admin token. The
    secret is in the answer only."""
    owner = None
    if body.role == "user":
        if caller.user_id is None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_ENTITY,
                "role: an admin token has no user to act as: log in as a user",
            )
        owner = await node.accounts.get(caller.name)
    else:
        require_global_admin(caller)
    expires = None
    if body.expires_in_days is not None:
        expires = node.clock.now() + timedelta(days=body.expires_in_days)
    try:
        secret, token = await node.tokens.create(
            body.name, body.role, body.pools, user=owner, expires_at=expires
        )
    except AccountError as error:
        raise _bad(error) from None
    await node.audit.token_created(caller, token, address=address)
    [shown] = await _tokens_out(node, [token])
    return NewTokenOut(**shown.model_dump(), token=secret)


async def revoke_token_by_id(
    node: Node, caller: Principal, address: str | None, token_id: int
) -> None:
    """Revoke a token (``caller``'s, or any for a global admin; else 404 as if unknown),
    audited; 409 if it is revoked already."""
    token = await node.tokens.get(token_id)
    if token is None or not (caller.global_admin or token.user_id == caller.user_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no such token: {token_id}")
    if not await node.tokens.revoke(token_id):
        raise HTTPException(status.HTTP_409_CONFLICT, f"token {token_id} is revoked already")
    await node.audit.record(caller, "token.revoke", address=address, target=f"token {token_id}")


async def _tokens_out(node: Node, tokens: list[TokenRecord]) -> list[TokenOut]:
    names = {user.id: user.name for user in await node.accounts.all()}
    return [TokenOut.of(token, names.get(token.user_id or -1)) for token in tokens]
