"""Store contract: users, grants, tokens, sessions and the audit log, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from belfry.adapters.store import SqlStore
from belfry.core.records import AuditEntry

T0 = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


async def test_users_are_unique_and_take_their_grants_tokens_and_sessions_along(
    store: SqlStore,
) -> None:
    alice = await store.create_user("alice", "hash", False, T0)
    with pytest.raises(ValueError, match="already exists"):
        await store.create_user("alice", None, True, T0)
    await store.set_grant(alice.id, "billing", "viewer")
    await store.set_grant(alice.id, "billing", "editor")  # replaces the role
    await store.set_grant(alice.id, "*", "viewer")
    assert [(g.group, g.role) for g in await store.list_grants(alice.id)] == [
        ("*", "viewer"),
        ("billing", "editor"),
    ]
    token = await store.create_token("cli", "user", [], "h1", T0, user_id=alice.id)
    await store.create_session("s1", alice.id, "csrf", T0, T0 + timedelta(hours=1))
    assert await store.delete_user("alice")
    assert await store.get_user("alice") is None
    assert await store.list_grants() == []
    assert await store.get_token(token.id) is None
    assert await store.find_session("s1", T0) is None
    assert not await store.delete_user("alice")


async def test_a_new_password_or_disabling_ends_the_sessions(store: SqlStore) -> None:
    bob = await store.create_user("bob", "old", False, T0)
    await store.create_session("s1", bob.id, "csrf", T0, T0 + timedelta(hours=1))
    assert (await store.update_user("bob", global_admin=True)) is not None
    assert await store.find_session("s1", T0) is not None  # a role change keeps it
    updated = await store.update_user("bob", password_hash="new")
    assert updated is not None and updated.password_hash == "new" and updated.global_admin
    assert await store.find_session("s1", T0) is None
    await store.create_session("s2", bob.id, "csrf", T0, T0 + timedelta(hours=1))
    await store.update_user("bob", disabled=True)
    assert await store.find_session("s2", T0) is None
    assert await store.update_user("nobody", disabled=True) is None


async def test_sessions_expire(store: SqlStore) -> None:
    carol = await store.create_user("carol", "h", False, T0)
    await store.create_session("s1", carol.id, "tok", T0, T0 + timedelta(minutes=5))
    found = await store.find_session("s1", T0 + timedelta(minutes=4))
    assert found is not None and (found.user_id, found.csrf_token) == (carol.id, "tok")
    assert await store.find_session("s1", T0 + timedelta(minutes=5)) is None


async def test_tokens_are_revoked_once_and_listed_per_user(store: SqlStore) -> None:
    dave = await store.create_user("dave", "h", False, T0)
    mine = await store.create_token(
        "cli", "user", [], "h1", T0, user_id=dave.id, expires_at=T0 + timedelta(days=1)
    )
    await store.create_token("w", "worker", ["a"], "h2", T0)
    assert [t.id for t in await store.list_tokens(dave.id)] == [mine.id]
    assert len(await store.list_tokens()) == 2
    assert mine.usable(T0) and not mine.usable(T0 + timedelta(days=1))
    assert await store.revoke_token(mine.id, T0)
    assert not await store.revoke_token(mine.id, T0)
    found = await store.find_token("h1")
    assert found is not None and found.revoked_at == T0 and not found.usable(T0)


async def test_the_audit_log_filters_by_group_actor_action_and_time(store: SqlStore) -> None:
    await store.append_audit(
        [
            AuditEntry(
                "alice", "job.update", "10.0.0.1", "billing", "billing/x", {"a": 1}, {"a": 2}
            ),
            AuditEntry("bob", "job.delete", None, "reports", "reports/y"),
            AuditEntry("admin", "user.create", None, None, "carol"),
        ],
        T0,
    )
    await store.append_audit([AuditEntry("alice", "jobless", group="billing")], T0 + timedelta(1))
    newest_first = await store.list_audit()
    assert [r.entry.action for r in newest_first] == [
        "jobless",
        "user.create",
        "job.delete",
        "job.update",
    ]
    update = newest_first[-1].entry
    assert (update.address, update.before, update.after) == ("10.0.0.1", {"a": 1}, {"a": 2})
    assert [r.entry.target for r in await store.list_audit(groups=["billing"])] == [
        None,
        "billing/x",
    ]
    assert len(await store.list_audit(grouped_only=True)) == 3
    # "job" matches job.update and job.delete, not "jobless".
    assert {r.entry.action for r in await store.list_audit(action="job")} == {
        "job.update",
        "job.delete",
    }
    assert [r.entry.actor for r in await store.list_audit(actor="bob")] == ["bob"]
    assert len(await store.list_audit(since=T0 + timedelta(hours=1))) == 1
    oldest = newest_first[-1].id
    assert await store.list_audit(before_id=oldest) == []
    assert len(await store.list_audit(limit=2)) == 2
