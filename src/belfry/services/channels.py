"""Channels and group settings as ``apply`` and the API keep them: sealed, diffed, checked.

A channel's spec holds credentials (tokens in apprise URLs, webhook secrets), so it is
sealed whole with the server's secret key; its digest tells an unchanged re-apply from a
change without opening anything, and only its redacted form is ever shown or audited.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from belfry.core.alerts import GroupSpec
from belfry.core.channels import ChannelSpec
from belfry.core.deliveries import AlertingWrites, ChannelRecord, ChannelWrite, GroupRecord
from belfry.core.env_secrets import SealedSecret
from belfry.core.jobs import JobSpec
from belfry.ports.clock import Clock
from belfry.ports.store import Store
from belfry.services.secret_box import SecretBox

__all__ = [
    "AlertingPlan",
    "ChannelCatalog",
    "ChannelInUse",
    "NamedChange",
    "UnknownChannel",
]


class UnknownChannel(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no such channel: {name}")


class ChannelInUse(ValueError):
    """A channel cannot be deleted while jobs or groups alert through it."""


@dataclass(frozen=True)
class NamedChange:
    name: str
    action: str  # create | update | unchanged
    before: dict[str, Any] | None = None  # redacted
    after: dict[str, Any] | None = None  # redacted


@dataclass(frozen=True)
class AlertingPlan:
    """What an ``apply`` writes of channels and groups, and which channels exist after it."""

    writes: AlertingWrites
    channel_changes: list[NamedChange] = field(default_factory=list)
    group_changes: list[NamedChange] = field(default_factory=list)
    known_channels: frozenset[str] = frozenset()

    @property
    def changes_anything(self) -> bool:
        return bool(self.writes.channels or self.writes.groups)


def _canonical(spec: ChannelSpec) -> str:
    return json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


class ChannelCatalog:
    def __init__(self, store: Store, clock: Clock, secrets: SecretBox | None) -> None:
        """Without ``secrets`` (a server always has them; some tests do not), channels
        cannot be applied nor opened."""
        self._store = store
        self._clock = clock
        self._secrets = secrets

    async def list_channels(self) -> list[ChannelRecord]:
        return await self._store.list_channels()

    async def get_channel(self, name: str) -> ChannelRecord:
        for record in await self._store.list_channels():
            if record.name == name:
                return record
        raise UnknownChannel(name)

    def open(self, record: ChannelRecord) -> ChannelSpec:
        """The channel's spec with its credentials (raises SecretUnreadable if sealed
        under another server key)."""
        plain = self._box().open(SealedSecret(encrypted=record.sealed, digest=record.digest))
        return ChannelSpec.model_validate_json(plain)

    def _box(self) -> SecretBox:
        if self._secrets is None:
            raise ValueError("channels: this server has no secret key to seal them with")
        return self._secrets

    async def list_groups(self) -> list[GroupRecord]:
        return await self._store.list_group_settings()

    async def plan(
        self, channels: Sequence[ChannelSpec], groups: Sequence[GroupSpec]
    ) -> AlertingPlan:
        """The writes and changes of applying ``channels`` and ``groups`` (each created or
        replacing the one of its name). Raises ValueError for a name given twice."""
        for what, names in (
            ("channel", [c.name for c in channels]),
            ("group", [g.name for g in groups]),
        ):
            repeated = sorted(name for name, n in Counter(names).items() if n > 1)
            if repeated:
                raise ValueError(f"{what} {repeated[0]} is given twice")
        stored = {record.name: record for record in await self._store.list_channels()}
        channel_writes: list[ChannelWrite] = []
        channel_changes: list[NamedChange] = []
        for spec in channels:
            plain = _canonical(spec)
            current = stored.get(spec.name)
            if current is not None and self._box().matches(
                SealedSecret(encrypted=current.sealed, digest=current.digest), plain
            ):
                channel_changes.append(NamedChange(spec.name, "unchanged"))
                continue
            sealed = self._box().seal(plain)
            redacted = spec.redacted()
            channel_writes.append(
                ChannelWrite(spec.name, sealed.encrypted, sealed.digest, redacted)
            )
            action = "create" if current is None else "update"
            before = None if current is None else current.redacted
            channel_changes.append(NamedChange(spec.name, action, before, redacted))
        stored_groups = {
            record.name: record.spec for record in await self._store.list_group_settings()
        }
        group_writes: list[GroupSpec] = []
        group_changes: list[NamedChange] = []
        for group in groups:
            current_group = stored_groups.get(group.name)
            if current_group == group:
                group_changes.append(NamedChange(group.name, "unchanged"))
                continue
            group_writes.append(group)
            group_changes.append(
                NamedChange(
                    group.name,
                    "create" if current_group is None else "update",
                    None if current_group is None else current_group.model_dump(mode="json"),
                    group.model_dump(mode="json", exclude_defaults=True),
                )
            )
        return AlertingPlan(
            AlertingWrites(channels=channel_writes, groups=group_writes),
            channel_changes,
            group_changes,
            frozenset(stored) | {spec.name for spec in channels},
        )

    @staticmethod
    def check_references(
        plan: AlertingPlan, jobs: Iterable[JobSpec], groups: Iterable[GroupSpec]
    ) -> None:
        """ValueError naming the first job or group that alerts a channel which neither
        exists nor is applied."""
        for job in jobs:
            missing = sorted(job.channels - plan.known_channels)
            if missing:
                raise ValueError(f"job {job.key}: notify: no such channel {missing[0]!r}")
        for group in groups:
            missing = sorted(group.channels - plan.known_channels)
            if missing:
                raise ValueError(f"group {group.name}: notify: no such channel {missing[0]!r}")

    async def delete_channel(self, name: str) -> None:
        """Delete a channel no job or group alerts (ChannelInUse names those that do)."""
        await self.get_channel(name)
        users = [
            f"job {job.key}" for job in await self._store.list_jobs() if name in job.spec.channels
        ]
        users += [
            f"group {record.name}"
            for record in await self._store.list_group_settings()
            if name in record.spec.channels
        ]
        if users:
            shown = ", ".join(users[:5]) + (f" and {len(users) - 5} more" if len(users) > 5 else "")
            raise ChannelInUse(f"channel {name} is still used by {shown}")
        await self._store.apply_jobs(
            [], [], self._clock.now(), alerting=AlertingWrites(delete_channels=[name])
        )

    async def delete_group(self, name: str) -> bool:
        if name not in {record.name for record in await self._store.list_group_settings()}:
            return False
        await self._store.apply_jobs(
            [], [], self._clock.now(), alerting=AlertingWrites(delete_groups=[name])
        )
        return True
