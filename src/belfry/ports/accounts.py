"""The accounts port: users, their grants, tokens, browser sessions and the audit log.

Like the rest of the store, every method is one transaction; times are aware UTC.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Protocol

from belfry.core.records import (
    AuditEntry,
    AuditRecord,
    GrantRecord,
    SessionRecord,
    TokenRecord,
    UserRecord,
)

__all__ = ["AccountStore"]


class AccountStore(Protocol):
    # -- users ------------------------------------------------------------------------------
    async def create_user(
        self, name: str, password_hash: str | None, global_admin: bool, now: datetime
    ) -> UserRecord:
        """A new user; ValueError if the name is taken."""
        ...

    async def get_user(self, name: str) -> UserRecord | None: ...

    async def get_user_by_id(self, user_id: int) -> UserRecord | None: ...

    async def list_users(self) -> list[UserRecord]:
        """Every user, by name."""
        ...

    async def count_users(self) -> int: ...

    async def delete_user(self, name: str) -> bool:
        """Delete the user with its grants, tokens and sessions; False if there is none."""
        ...

    async def update_user(
        self,
        name: str,
        *,
        password_hash: str | None = None,
        disabled: bool | None = None,
        global_admin: bool | None = None,
    ) -> UserRecord | None:
        """Change what is given; a new password or disabling ends the user's sessions.
        Returns the user as it is now (None if there is none)."""
        ...

    # -- grants -----------------------------------------------------------------------------
    async def set_grant(self, user_id: int, group: str, role: str) -> None:
        """Give the user ``role`` on ``group`` (``*``: all), replacing a role it had there."""
        ...

    async def remove_grant(self, user_id: int, group: str) -> bool: ...

    async def list_grants(
        self, user_id: int | None = None, groups: Collection[str] | None = None
    ) -> list[GrantRecord]:
        """Grants by user name then group; only the user's, or only on ``groups``."""
        ...

    # -- tokens -----------------------------------------------------------------------------
    async def create_token(
        self,
        name: str,
        role: str,
        pools: Sequence[str],
        secret_hash: str,
        now: datetime,
        *,
        user_id: int | None = None,
        expires_at: datetime | None = None,
    ) -> TokenRecord: ...

    async def find_token(self, secret_hash: str) -> TokenRecord | None:
        """The token with that hash, revoked and expired ones included."""
        ...

    async def get_token(self, token_id: int) -> TokenRecord | None: ...

    async def list_tokens(self, user_id: int | None = None) -> list[TokenRecord]:
        """Tokens by id; only the user's with ``user_id``."""
        ...

    async def revoke_token(self, token_id: int, now: datetime) -> bool:
        """Revoke it (from now on refused); False if unknown or revoked already."""
        ...

    async def count_tokens(self) -> int: ...

    # -- sessions ---------------------------------------------------------------------------
    async def create_session(
        self, id_hash: str, user_id: int, csrf_token: str, now: datetime, expires_at: datetime
    ) -> None: ...

    async def find_session(self, id_hash: str, now: datetime) -> SessionRecord | None:
        """The session if it has not expired by ``now``."""
        ...

    async def delete_session(self, id_hash: str) -> None: ...

    # -- audit ------------------------------------------------------------------------------
    async def append_audit(self, entries: Sequence[AuditEntry], now: datetime) -> None: ...

    async def list_audit(
        self,
        *,
        groups: Collection[str] | None = None,
        grouped_only: bool = False,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """Newest first; only entries about ``groups`` if given, or about any group with
        ``grouped_only`` (entries about no group are then left out); ``action`` matches
        itself and its sub-actions (``job`` matches ``job.apply``); ``before_id`` pages
        back."""
        ...
