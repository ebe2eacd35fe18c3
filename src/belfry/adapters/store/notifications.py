"""The alerts part of the SQL store: channels, group settings, deliveries, notifier marks."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from belfry.adapters.store.connections import SqlConnections
from belfry.adapters.store.run_rows import run_record
from belfry.adapters.store.schema import (
    channels,
    deliveries,
    group_settings,
    notifier_marks,
    runs,
)
from belfry.core.alerts import Alert, AlertKind, GroupSpec
from belfry.core.deliveries import (
    AlertingWrites,
    ChannelRecord,
    DeliveryRecord,
    DeliveryState,
    GroupRecord,
    NewDelivery,
)
from belfry.core.records import RunRecord
from belfry.core.states import FINAL_STATES, RunState

__all__ = ["NotificationStore"]

# Runs that say nothing about whether the job works: a skip, or a user's kill.
_NOT_OUTCOMES = (RunState.SKIPPED.value, RunState.KILLED.value)


# The states of a run that has ended, as stored.
_FINAL_NAMES = sorted(state.value for state in FINAL_STATES)


class NotificationStore(SqlConnections):
    async def _write_alerting(
        self, connection: AsyncConnection, writes: AlertingWrites, now: datetime
    ) -> None:
        """Channels and group settings, in the caller's (``apply_jobs``') transaction."""
        await self._write_named(
            connection,
            channels,
            {
                channel.name: {
                    "sealed": channel.sealed,
                    "digest": channel.digest,
                    "redacted": json.dumps(channel.redacted),
                }
                for channel in writes.channels
            },
            writes.delete_channels,
            now,
        )
        await self._write_named(
            connection,
            group_settings,
            {group.name: {"spec": group.model_dump_json()} for group in writes.groups},
            writes.delete_groups,
            now,
        )

    async def list_channels(self) -> list[ChannelRecord]:
        async with self._read() as connection:
            result = await connection.execute(select(channels).order_by(channels.c.name))
            return [_channel(row) for row in result]

    async def list_group_settings(self) -> list[GroupRecord]:
        async with self._read() as connection:
            result = await connection.execute(
                select(group_settings).order_by(group_settings.c.name)
            )
            return [_group(row) for row in result]

    async def enqueue_deliveries(
        self, new: Sequence[NewDelivery], now: datetime
    ) -> list[DeliveryRecord]:
        if not new:
            return []
        rows = [
            {
                "channel": item.channel,
                "kind": item.kind.value,
                "job": item.alert.job,
                "run_id": item.alert.run_id,
                "dedup_key": item.dedup_key,
                "alert": json.dumps(item.alert.to_document()),
                "state": DeliveryState.PENDING.value,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for item in new
        ]
        inserted: list[DeliveryRecord] = []
        async with self._write() as connection:
            # Row by row: RETURNING with ON CONFLICT DO NOTHING over many rows is not
            # supported by SQLAlchemy's executemany on every driver.
            for row in rows:
                statement = (
                    self._insert(deliveries)
                    .values(row)
                    .on_conflict_do_nothing(index_elements=[deliveries.c.dedup_key])
                    .returning(*deliveries.c)
                )
                result = (await connection.execute(statement)).first()
                if result is not None:
                    inserted.append(_delivery(result))
        return inserted

    async def take_deliveries(
        self, now: datetime, lease: timedelta, limit: int
    ) -> list[DeliveryRecord]:
        due = or_(
            and_(
                deliveries.c.state == DeliveryState.PENDING.value,
                deliveries.c.next_attempt_at <= now,
            ),
            and_(
                deliveries.c.state == DeliveryState.SENDING.value,
                deliveries.c.lease_until < now,
            ),
        )
        taken: list[DeliveryRecord] = []
        async with self._write() as connection:
            candidates = await connection.execute(
                select(deliveries.c.id, deliveries.c.attempts)
                .where(due)
                .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
                .limit(limit)
            )
            for candidate in candidates.all():
                # Compare-and-set on the attempt count: two servers never take the same one.
                row = (
                    await connection.execute(
                        update(deliveries)
                        .where(
                            deliveries.c.id == candidate.id,
                            deliveries.c.attempts == candidate.attempts,
                            due,
                        )
                        .values(
                            state=DeliveryState.SENDING.value,
                            lease_until=now + lease,
                            attempts=candidate.attempts + 1,
                        )
                        .returning(*deliveries.c)
                    )
                ).first()
                if row is not None:
                    taken.append(_delivery(row))
        return taken

    async def settle_delivery(
        self,
        delivery_id: int,
        state: DeliveryState,
        now: datetime,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> None:
        values: dict[str, Any] = {"state": state.value, "lease_until": None}
        if state is DeliveryState.SENT:
            values["sent_at"] = now
        if error is not None:
            values["last_error"] = error
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        async with self._write() as connection:
            await connection.execute(
                update(deliveries).where(deliveries.c.id == delivery_id).values(**values)
            )

    async def list_deliveries(
        self,
        channel: str | None = None,
        run_id: int | None = None,
        job: str | None = None,
        limit: int = 50,
        groups: Collection[str] | None = None,
    ) -> list[DeliveryRecord]:
        statement = select(deliveries).order_by(deliveries.c.id.desc()).limit(limit)
        if channel is not None:
            statement = statement.where(deliveries.c.channel == channel)
        if run_id is not None:
            statement = statement.where(deliveries.c.run_id == run_id)
        if job is not None:
            statement = statement.where(deliveries.c.job == job)
        if groups is not None:
            statement = statement.where(
                or_(*(deliveries.c.job.startswith(f"{group}/") for group in groups))
                if groups
                else deliveries.c.id.is_(None)
            )
        async with self._read() as connection:
            return [_delivery(row) for row in await connection.execute(statement)]

    async def last_alerted(self, job: str, kind: AlertKind, channel: str) -> datetime | None:
        statement = select(func.max(deliveries.c.created_at)).where(
            deliveries.c.job == job,
            deliveries.c.kind == kind.value,
            deliveries.c.channel == channel,
        )
        async with self._read() as connection:
            latest: datetime | None = await connection.scalar(statement)
        return latest

    async def ended_run_ids(self, since: datetime) -> list[int]:
        # Ids only: a reader re-reads its overlap every pass, and a burst puts thousands of
        # runs in it; whole records are read for the ones it has not handled yet.
        statement = (
            select(runs.c.id)
            .where(runs.c.finished_at >= since, runs.c.state.in_(_FINAL_NAMES))
            .order_by(runs.c.finished_at, runs.c.id)
        )
        async with self._read() as connection:
            return list((await connection.scalars(statement)).all())

    async def ended_runs(self, run_ids: Sequence[int]) -> list[RunRecord]:
        if not run_ids:
            return []
        statement = (
            select(runs).where(runs.c.id.in_(set(run_ids))).order_by(runs.c.finished_at, runs.c.id)
        )
        async with self._read() as connection:
            return [run_record(row) for row in await connection.execute(statement)]

    async def previous_outcome(self, run: RunRecord) -> RunState | None:
        if run.finished_at is None:
            return None
        statement = (
            select(runs.c.state)
            .where(
                runs.c.job_id == run.job_id,
                runs.c.id != run.id,
                runs.c.finished_at.is_not(None),
                or_(
                    runs.c.finished_at < run.finished_at,
                    and_(runs.c.finished_at == run.finished_at, runs.c.id < run.id),
                ),
                runs.c.state.not_in(_NOT_OUTCOMES),
            )
            .order_by(runs.c.finished_at.desc(), runs.c.id.desc())
            .limit(1)
        )
        async with self._read() as connection:
            state = await connection.scalar(statement)
        return None if state is None else RunState(state)

    async def has_later_attempt(self, run: RunRecord) -> bool:
        statement = select(runs.c.id).where(
            runs.c.job_id == run.job_id,
            runs.c.scheduled_for == run.scheduled_for,
            runs.c.target == (run.target or ""),
            runs.c.attempt > run.attempt,
        )
        async with self._read() as connection:
            return (await connection.execute(statement.limit(1))).first() is not None

    async def recent_durations(self, job_id: int, limit: int) -> list[timedelta]:
        statement = (
            select(runs.c.started_at, runs.c.finished_at)
            .where(
                runs.c.job_id == job_id,
                runs.c.state == RunState.SUCCEEDED.value,
                runs.c.started_at.is_not(None),
            )
            .order_by(runs.c.id.desc())
            .limit(limit)
        )
        async with self._read() as connection:
            rows = (await connection.execute(statement)).all()
        return [row.finished_at - row.started_at for row in rows if row.finished_at]

    async def get_mark(self, name: str) -> datetime | None:
        async with self._read() as connection:
            at: datetime | None = await connection.scalar(
                select(notifier_marks.c.at).where(notifier_marks.c.name == name)
            )
        return at

    async def set_mark(self, name: str, at: datetime) -> None:
        statement = self._insert(notifier_marks).values(name=name, at=at)
        statement = statement.on_conflict_do_update(
            index_elements=[notifier_marks.c.name], set_={"at": statement.excluded.at}
        )
        async with self._write() as connection:
            await connection.execute(statement)

    async def delete_mark(self, name: str) -> None:
        async with self._write() as connection:
            await connection.execute(delete(notifier_marks).where(notifier_marks.c.name == name))

    async def list_marks(self, prefix: str) -> list[tuple[str, datetime]]:
        statement = (
            select(notifier_marks.c.name, notifier_marks.c.at)
            .where(notifier_marks.c.name.startswith(prefix, autoescape=True))
            .order_by(notifier_marks.c.name)
        )
        async with self._read() as connection:
            return [(row.name, row.at) for row in await connection.execute(statement)]

    async def prune_deliveries(self, created_before: datetime) -> int:
        statement = delete(deliveries).where(
            deliveries.c.created_at < created_before,
            deliveries.c.state.in_([DeliveryState.SENT.value, DeliveryState.FAILED.value]),
        )
        async with self._write() as connection:
            result = await connection.execute(statement)
        return int(result.rowcount or 0)


def _channel(row: Row[Any]) -> ChannelRecord:
    data = row._mapping
    return ChannelRecord(
        name=data["name"],
        sealed=data["sealed"],
        digest=data["digest"],
        redacted=json.loads(data["redacted"]),
        created_at=data["created_at"],
        updated_at=data["updated_at"],
    )


def _group(row: Row[Any]) -> GroupRecord:
    data = row._mapping
    return GroupRecord(
        spec=GroupSpec.model_validate_json(data["spec"]),
        created_at=data["created_at"],
        updated_at=data["updated_at"],
    )


def _delivery(row: Row[Any]) -> DeliveryRecord:
    data = row._mapping
    return DeliveryRecord(
        id=data["id"],
        channel=data["channel"],
        kind=AlertKind(data["kind"]),
        job=data["job"],
        run_id=data["run_id"],
        dedup_key=data["dedup_key"],
        alert=Alert.from_document(json.loads(data["alert"])),
        state=DeliveryState(data["state"]),
        attempts=data["attempts"],
        next_attempt_at=data["next_attempt_at"],
        last_error=data["last_error"],
        created_at=data["created_at"],
        sent_at=data["sent_at"],
    )
