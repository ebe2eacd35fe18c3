"""API tokens: random secrets, stored only as hashes, shown once, with expiry and revocation.

Three kinds: a user's token acts as that user (their grants, nothing more); an ``admin``
token, made on a server host with ``belfry token create --db``, is a global admin; a
``worker`` token may only speak the worker protocol for its pools.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime

from belfry.core.permissions import Principal
from belfry.core.records import TokenRecord, UserRecord
from belfry.ports.clock import Clock
from belfry.ports.store import Store
from belfry.services.accounts import AccountError, principal_of

__all__ = ["TOKEN_ROLES", "TokenService", "hash_secret"]

_PREFIX = "bfy_"
TOKEN_ROLES = ("admin", "worker", "user")


def hash_secret(secret: str) -> str:
    # Tokens carry 256 bits of randomness, so a plain SHA-256 (no salt, no stretching) is
    # enough and lets a request be checked with one indexed look-up.
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenService:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def create(
        self,
        name: str,
        role: str = "admin",
        pools: Sequence[str] = (),
        *,
        user: UserRecord | None = None,
        expires_at: datetime | None = None,
    ) -> tuple[str, TokenRecord]:
        """A new token; the secret is returned here and never again. A ``user`` token
        needs its user; the others have none."""
        if role not in TOKEN_ROLES:
            raise AccountError(f"role: must be one of {', '.join(TOKEN_ROLES)}, got {role!r}")
        if (role == "user") != (user is not None):
            raise AccountError("role: a user token belongs to a user, and only it does")
        if role == "worker" and not pools:
            raise AccountError("pools: a worker token serves at least one pool")
        if expires_at is not None and expires_at <= self._clock.now():
            raise AccountError("expires: must be in the future")
        secret = _PREFIX + secrets.token_urlsafe(32)
        record = await self._store.create_token(
            name,
            role,
            list(pools),
            hash_secret(secret),
            self._clock.now(),
            user_id=user.id if user is not None else None,
            expires_at=expires_at,
        )
        return secret, record

    async def authenticate(self, secret: str) -> Principal | None:
        """The principal a bearer secret stands for; None if unknown, revoked, expired,
        or its user is disabled."""
        if not secret.startswith(_PREFIX):
            return None
        token = await self._store.find_token(hash_secret(secret))
        if token is None or not token.usable(self._clock.now()):
            return None
        if token.role == "worker":
            return Principal(
                name=f"token:{token.name}", worker_pools=tuple(token.pools), token_id=token.id
            )
        if token.role == "admin":
            return Principal(name=f"token:{token.name}", global_admin=True, token_id=token.id)
        user = await self._store.get_user_by_id(token.user_id) if token.user_id else None
        if user is None or user.disabled:
            return None
        return await principal_of(self._store, user, token_id=token.id)

    async def all(self, user_id: int | None = None) -> list[TokenRecord]:
        return await self._store.list_tokens(user_id)

    async def get(self, token_id: int) -> TokenRecord | None:
        return await self._store.get_token(token_id)

    async def revoke(self, token_id: int) -> bool:
        return await self._store.revoke_token(token_id, self._clock.now())

    async def any_exist(self) -> bool:
        return await self._store.count_tokens() > 0
