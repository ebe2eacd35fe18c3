"""The accounts part of the SQL store: users, grants, tokens, sessions and the audit log."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from belfry.adapters.store.connections import SqlConnections
from belfry.adapters.store.schema import audit, grants, sessions, tokens, users
from belfry.core.records import (
    AuditEntry,
    AuditRecord,
    GrantRecord,
    SessionRecord,
    TokenRecord,
    UserRecord,
)

__all__ = ["AccountStore"]


class AccountStore(SqlConnections):
    # -- users ------------------------------------------------------------------------------
    async def create_user(
        self, name: str, password_hash: str | None, global_admin: bool, now: datetime
    ) -> UserRecord:
        statement = (
            users.insert()
            .values(
                name=name,
                password_hash=password_hash,
                global_admin=global_admin,
                disabled=False,
                created_at=now,
            )
            .returning(*users.c)
        )
        try:
            async with self._write() as connection:
                row = (await connection.execute(statement)).one()
        except IntegrityError:
            raise ValueError(f"user {name!r} already exists") from None
        return _user(row)

    async def get_user(self, name: str) -> UserRecord | None:
        async with self._read() as connection:
            row = (await connection.execute(select(users).where(users.c.name == name))).first()
        return _user(row) if row else None

    async def get_user_by_id(self, user_id: int) -> UserRecord | None:
        async with self._read() as connection:
            row = (await connection.execute(select(users).where(users.c.id == user_id))).first()
        return _user(row) if row else None

    async def list_users(self) -> list[UserRecord]:
        async with self._read() as connection:
            result = await connection.execute(select(users).order_by(users.c.name))
            return [_user(row) for row in result]

    async def count_users(self) -> int:
        async with self._read() as connection:
            count = await connection.scalar(select(func.count()).select_from(users))
        return int(count or 0)

    async def delete_user(self, name: str) -> bool:
        async with self._write() as connection:
            # Its grants, tokens and sessions go with it (ON DELETE CASCADE), on SQLite too.
            user_id = await connection.scalar(select(users.c.id).where(users.c.name == name))
            if user_id is None:
                return False
            for table in (grants, tokens, sessions):
                await connection.execute(delete(table).where(table.c.user_id == user_id))
            await connection.execute(delete(users).where(users.c.id == user_id))
        return True

    async def update_user(
        self,
        name: str,
        *,
        password_hash: str | None = None,
        disabled: bool | None = None,
        global_admin: bool | None = None,
    ) -> UserRecord | None:
        values: dict[str, Any] = {}
        if password_hash is not None:
            values["password_hash"] = password_hash
        if disabled is not None:
            values["disabled"] = disabled
        if global_admin is not None:
            values["global_admin"] = global_admin
        statement = update(users).where(users.c.name == name)
        async with self._write() as connection:
            if values:
                await connection.execute(statement.values(values))
            if disabled or password_hash is not None:
                # A disabled user, or a new password: every open session ends.
                user_id = select(users.c.id).where(users.c.name == name).scalar_subquery()
                await connection.execute(delete(sessions).where(sessions.c.user_id == user_id))
            row = (await connection.execute(select(users).where(users.c.name == name))).first()
        return _user(row) if row else None

    # -- grants -----------------------------------------------------------------------------
    async def set_grant(self, user_id: int, group: str, role: str) -> None:
        statement = self._insert(grants).values(user_id=user_id, group_name=group, role=role)
        statement = statement.on_conflict_do_update(
            index_elements=[grants.c.user_id, grants.c.group_name],
            set_={"role": statement.excluded.role},
        )
        async with self._write() as connection:
            await connection.execute(statement)

    async def remove_grant(self, user_id: int, group: str) -> bool:
        async with self._write() as connection:
            result = await connection.execute(
                delete(grants).where(grants.c.user_id == user_id, grants.c.group_name == group)
            )
        return bool(result.rowcount)

    async def list_grants(
        self, user_id: int | None = None, groups: Collection[str] | None = None
    ) -> list[GrantRecord]:
        statement = select(users.c.name, grants.c.group_name, grants.c.role).join(
            users, users.c.id == grants.c.user_id
        )
        if user_id is not None:
            statement = statement.where(grants.c.user_id == user_id)
        if groups is not None:
            statement = statement.where(grants.c.group_name.in_(sorted(groups)))
        statement = statement.order_by(users.c.name, grants.c.group_name)
        async with self._read() as connection:
            result = await connection.execute(statement)
            return [GrantRecord(row.name, row.group_name, row.role) for row in result]

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
    ) -> TokenRecord:
        statement = (
            tokens.insert()
            .values(
                name=name,
                role=role,
                pools=json.dumps(list(pools)),
                secret_hash=secret_hash,
                created_at=now,
                user_id=user_id,
                expires_at=expires_at,
            )
            .returning(*tokens.c)
        )
        try:
            async with self._write() as connection:
                row = (await connection.execute(statement)).one()
        except IntegrityError as error:
            raise ValueError("a token with this secret already exists") from error
        return _token(row)

    async def find_token(self, secret_hash: str) -> TokenRecord | None:
        statement = select(tokens).where(tokens.c.secret_hash == secret_hash)
        async with self._read() as connection:
            row = (await connection.execute(statement)).first()
        return _token(row) if row else None

    async def list_tokens(self, user_id: int | None = None) -> list[TokenRecord]:
        statement = select(tokens).order_by(tokens.c.id)
        if user_id is not None:
            statement = statement.where(tokens.c.user_id == user_id)
        async with self._read() as connection:
            return [_token(row) for row in await connection.execute(statement)]

    async def get_token(self, token_id: int) -> TokenRecord | None:
        async with self._read() as connection:
            row = (await connection.execute(select(tokens).where(tokens.c.id == token_id))).first()
        return _token(row) if row else None

    async def revoke_token(self, token_id: int, now: datetime) -> bool:
        async with self._write() as connection:
            result = await connection.execute(
                update(tokens)
                .where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        return bool(result.rowcount)

    async def count_tokens(self) -> int:
        async with self._read() as connection:
            count = await connection.scalar(select(func.count()).select_from(tokens))
        return int(count or 0)

    # -- sessions ---------------------------------------------------------------------------
    async def create_session(
        self, id_hash: str, user_id: int, csrf_token: str, now: datetime, expires_at: datetime
    ) -> None:
        async with self._write() as connection:
            # Expired sessions are swept as new ones begin: the table stays small.
            await connection.execute(delete(sessions).where(sessions.c.expires_at <= now))
            await connection.execute(
                sessions.insert().values(
                    id_hash=id_hash,
                    user_id=user_id,
                    csrf_token=csrf_token,
                    created_at=now,
                    expires_at=expires_at,
                )
            )

    async def find_session(self, id_hash: str, now: datetime) -> SessionRecord | None:
        statement = select(sessions).where(
            sessions.c.id_hash == id_hash, sessions.c.expires_at > now
        )
        async with self._read() as connection:
            row = (await connection.execute(statement)).first()
        if row is None:
            return None
        return SessionRecord(row.user_id, row.csrf_token, row.expires_at)

    async def delete_session(self, id_hash: str) -> None:
        async with self._write() as connection:
            await connection.execute(delete(sessions).where(sessions.c.id_hash == id_hash))

    # -- audit ------------------------------------------------------------------------------
    async def append_audit(self, entries: Sequence[AuditEntry], now: datetime) -> None:
        if not entries:
            return
        rows = [
            {
                "at": now,
                "actor": entry.actor,
                "address": entry.address,
                "action": entry.action,
                "group_name": entry.group,
                "target": entry.target,
                "before": _json(entry.before),
                "after": _json(entry.after),
            }
            for entry in entries
        ]
        async with self._write() as connection:
            await connection.execute(audit.insert(), rows)

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
        statement = select(audit).order_by(audit.c.id.desc()).limit(limit)
        if groups is not None:
            statement = statement.where(audit.c.group_name.in_(sorted(groups)))
        if grouped_only:
            statement = statement.where(audit.c.group_name.is_not(None))
        if actor is not None:
            statement = statement.where(audit.c.actor == actor)
        if action is not None:
            statement = statement.where(
                or_(audit.c.action == action, audit.c.action.like(f"{action}.%"))
            )
        if since is not None:
            statement = statement.where(audit.c.at >= since)
        if before_id is not None:
            statement = statement.where(audit.c.id < before_id)
        async with self._read() as connection:
            return [_audit(row) for row in await connection.execute(statement)]


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def _user(row: Row[Any]) -> UserRecord:
    data = row._mapping
    return UserRecord(
        id=data["id"],
        name=data["name"],
        global_admin=bool(data["global_admin"]),
        disabled=bool(data["disabled"]),
        created_at=data["created_at"],
        password_hash=data["password_hash"],
    )


def _token(row: Row[Any]) -> TokenRecord:
    data = row._mapping
    return TokenRecord(
        id=data["id"],
        name=data["name"],
        role=data["role"],
        pools=list(json.loads(data["pools"])),
        created_at=data["created_at"],
        user_id=data["user_id"],
        expires_at=data["expires_at"],
        revoked_at=data["revoked_at"],
    )


def _audit(row: Row[Any]) -> AuditRecord:
    data = row._mapping
    entry = AuditEntry(
        actor=data["actor"],
        action=data["action"],
        address=data["address"],
        group=data["group_name"],
        target=data["target"],
        before=json.loads(data["before"]) if data["before"] is not None else None,
        after=json.loads(data["after"]) if data["after"] is not None else None,
    )
    return AuditRecord(data["id"], data["at"], entry)
