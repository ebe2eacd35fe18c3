"""Store contract: API tokens."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from belfry.adapters.store import SqlStore

T0 = datetime(2025, 3, 1, tzinfo=UTC)


async def test_tokens(store: SqlStore) -> None:
    assert await store.count_tokens() == 0
    admin = await store.create_token("ci", "admin", [], "hash-1", T0)
    worker = await store.create_token("app-1", "worker", ["web", "billing"], "hash-2", T0)
    assert (admin.name, admin.role, admin.pools, admin.created_at) == ("ci", "admin", [], T0)
    assert worker.pools == ["web", "billing"]
    assert admin.id != worker.id

    assert await store.find_token("hash-2") == worker
    assert await store.find_token("hash-3") is None
    assert await store.count_tokens() == 2

    with pytest.raises(ValueError):
        await store.create_token("dup", "admin", [], "hash-1", T0)
    assert await store.count_tokens() == 2
