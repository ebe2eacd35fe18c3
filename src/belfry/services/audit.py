"""The audit log: every change and action, who did it, from where, before and after."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from belfry.core.permissions import Principal
from belfry.core.records import AuditEntry, AuditRecord, TokenRecord
from belfry.ports.clock import Clock
from belfry.ports.store import Store

__all__ = ["AuditLog"]

log = logging.getLogger(__name__)


class AuditLog:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def record(
        self,
        who: Principal | str,
        action: str,
        *,
        address: str | None = None,
        group: str | None = None,
        target: str | None = None,
        before: Any = None,
        after: Any = None,
    ) -> None:
        await self.record_many(
            [
                AuditEntry(
                    actor=who if isinstance(who, str) else who.name,
                    action=action,
                    address=address,
                    group=group,
                    target=target,
                    before=before,
                    after=after,
                )
            ]
        )

    async def token_created(
        self,
        who: Principal | str,
        token: TokenRecord,
        *,
        address: str | None = None,
        via: str | None = None,
    ) -> None:
        """A token was made (through the API, or ``via`` another way: the CLI on a server
        host); its secret is never part of the entry."""
        after: dict[str, Any] = {
            "role": token.role,
            "pools": token.pools,
            "expires_at": token.expires_at,
        }
        if via is not None:
            after["via"] = via
        await self.record(
            who,
            "token.create",
            address=address,
            target=f"token {token.id} ({token.name})",
            after=after,
        )

    async def record_many(self, entries: list[AuditEntry]) -> None:
        await self._store.append_audit(entries, self._clock.now())
        for entry in entries:
            # Who did what also goes to the log (never the before/after: they may hold
            # job environments).
            log.info(
                "audit: %s %s %s%s",
                entry.actor,
                entry.action,
                entry.target or "-",
                f" from {entry.address}" if entry.address else "",
            )

    async def query(
        self,
        viewer: Principal,
        *,
        group: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """Entries ``viewer`` may see: everything for a global admin; otherwise only those
        about the groups they read."""
        readable = viewer.readable_groups()
        groups: frozenset[str] | None = readable
        if group is not None:
            groups = frozenset({group}) if readable is None or group in readable else frozenset()
        if groups is not None and not groups:
            return []
        return await self._store.list_audit(
            groups=groups,
            # Entries about no group (users, tokens, calendars) are for global admins.
            grouped_only=not viewer.global_admin,
            actor=actor,
            action=action,
            since=since,
            before_id=before_id,
            limit=limit,
        )
