"""API tokens: random secrets, stored only as hashes, shown once."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

from belfry.core.records import TokenRecord
from belfry.ports.clock import Clock
from belfry.ports.store import Store

__all__ = ["TokenService", "hash_secret"]

_PREFIX = "bfy_"


def hash_secret(secret: str) -> str:
    # Tokens carry 256 bits of randomness, so a plain SHA-256 (no salt, no stretching) is
    # enough and lets a request be checked with one indexed look-up.
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenService:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def create(
        self, name: str, role: str = "admin", pools: Sequence[str] = ()
    ) -> tuple[str, TokenRecord]:
        """A new token; the secret is returned here and never again."""
        if role not in {"admin", "worker"}:
            raise ValueError(f"role: must be admin or worker, got {role!r}")
        secret = _PREFIX + secrets.token_urlsafe(32)
        record = await self._store.create_token(
            name, role, list(pools), hash_secret(secret), self._clock.now()
        )
        return secret, record

    async def authenticate(self, secret: str) -> TokenRecord | None:
        if not secret.startswith(_PREFIX):
            return None
        return await self._store.find_token(hash_secret(secret))

    async def any_exist(self) -> bool:
        return await self._store.count_tokens() > 0
