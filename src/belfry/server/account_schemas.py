"""The JSON shapes of the accounts API: login, users, grants, tokens, audit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from belfry.core.permissions import Principal, Role
from belfry.core.records import AuditRecord, GrantRecord, TokenRecord, UserRecord

__all__ = [
    "AuditOut",
    "GrantIn",
    "GrantOut",
    "LoginIn",
    "LoginOut",
    "MeOut",
    "NewTokenOut",
    "PasswordIn",
    "TokenIn",
    "TokenOut",
    "UserIn",
    "UserOut",
    "UserPatch",
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(_In):
    name: str = Field(max_length=100)
    password: str = Field(max_length=1000)


class MeOut(BaseModel):
    name: str
    global_admin: bool
    grants: dict[str, Role] = Field(description="Role per group (* for all groups).")
    worker_pools: list[str] | None = None

    @classmethod
    def of(cls, principal: Principal) -> MeOut:
        pools = list(principal.worker_pools) if principal.worker_pools is not None else None
        return cls(
            name=principal.name,
            global_admin=principal.global_admin,
            grants=dict(principal.grants),
            worker_pools=pools,
        )


class LoginOut(MeOut):
    csrf_token: str = Field(description="Send it as X-CSRF-Token on state-changing calls.")


class UserIn(_In):
    name: str = Field(max_length=100)
    password: str | None = Field(default=None, max_length=1000)
    global_admin: bool = False


class UserPatch(_In):
    disabled: bool | None = None
    global_admin: bool | None = None


class PasswordIn(_In):
    password: str = Field(max_length=1000)


class UserOut(BaseModel):
    name: str
    global_admin: bool
    disabled: bool
    created_at: datetime
    password_login: bool

    @classmethod
    def of(cls, user: UserRecord) -> UserOut:
        return cls(
            name=user.name,
            global_admin=user.global_admin,
            disabled=user.disabled,
            created_at=user.created_at,
            password_login=user.password_hash is not None,
        )


class GrantIn(_In):
    role: Role


class GrantOut(BaseModel):
    user: str
    group: str
    role: Role

    @classmethod
    def of(cls, grant: GrantRecord) -> GrantOut:
        return cls(user=grant.user, group=grant.group, role=Role(grant.role))


class TokenIn(_In):
    name: str = Field(min_length=1, max_length=200)
    role: str = Field(
        default="user",
        description="user (acts as you), or, for global admins, worker (with pools) or admin.",
        pattern="^(user|worker|admin)$",
    )
    pools: list[str] = Field(default_factory=list, max_length=100)
    expires_in_days: float | None = Field(default=None, gt=0, le=3650)


class TokenOut(BaseModel):
    id: int
    name: str
    role: str
    pools: list[str]
    user: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, token: TokenRecord, user: str | None) -> TokenOut:
        return cls(
            id=token.id,
            name=token.name,
            role=token.role,
            pools=token.pools,
            user=user,
            created_at=token.created_at,
            expires_at=token.expires_at,
            revoked_at=token.revoked_at,
        )


class NewTokenOut(TokenOut):
    token: str = Field(description="The secret: shown this once, never again.")


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    address: str | None
    action: str
    group: str | None
    target: str | None
    before: Any = None
    after: Any = None

    @classmethod
    def of(cls, record: AuditRecord) -> AuditOut:
        entry = record.entry
        return cls(
            id=record.id,
            at=record.at,
            actor=entry.actor,
            address=entry.address,
            action=entry.action,
            group=entry.group,
            target=entry.target,
            before=entry.before,
            after=entry.after,
        )
