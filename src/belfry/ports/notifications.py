"""Alerts: sending one alert to one channel, and the store's part for the notifier."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from belfry.core.alerts import Alert, AlertKind
from belfry.core.channels import ChannelSpec
from belfry.core.deliveries import (
    ChannelRecord,
    DeliveryRecord,
    DeliveryState,
    GroupRecord,
    NewDelivery,
)
from belfry.core.records import RunRecord
from belfry.core.states import RunState

__all__ = ["ChannelSender", "DeliveryFailed", "NotificationStore"]


class DeliveryFailed(Exception):
    """The channel did not take the alert. The message is one line a user can act on
    (never a credential); ``permanent`` means retrying cannot help (bad address, 4xx other
    than 408/429, no SMTP configured)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class ChannelSender(Protocol):
    async def send(self, channel: ChannelSpec, alert: Alert, delivery_id: int) -> None:
        """Deliver ``alert`` through ``channel``, or raise DeliveryFailed. ``delivery_id``
        is stable across retries of the same delivery (receivers de-duplicate by it: the
        webhook's ``X-Belfry-Delivery`` header). Must not block the event loop."""
        ...


class NotificationStore(Protocol):
    """The store's part for alerts: channels, group settings, deliveries and the marks
    the notifier keeps. Channels and group settings are written by ``apply_jobs``."""

    async def list_channels(self) -> list[ChannelRecord]:
        """Every channel, ordered by name."""
        ...

    async def list_group_settings(self) -> list[GroupRecord]:
        """Every group's settings, ordered by name."""
        ...

    async def enqueue_deliveries(
        self, deliveries: Sequence[NewDelivery], now: datetime
    ) -> list[DeliveryRecord]:
        """Insert pending deliveries due now; one whose ``dedup_key`` exists already is
        not inserted (nor returned). Returns those inserted."""
        ...

    async def take_deliveries(
        self, now: datetime, lease: timedelta, limit: int
    ) -> list[DeliveryRecord]:
        """Take up to ``limit`` deliveries to attempt now: pending ones due at or before
        ``now``, and ones whose taker's lease ran out (it died mid-send). Each taken one
        is ``sending`` under a lease until ``now + lease`` with ``attempts`` one higher;
        a delivery is taken by one caller at a time (compare-and-set)."""
        ...

    async def settle_delivery(
        self,
        delivery_id: int,
        state: DeliveryState,
        now: datetime,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> None:
        """Record the outcome of an attempt: ``sent``, ``failed`` (given up), or
        ``pending`` again from ``next_attempt_at`` with ``error`` as its last error."""
        ...

    async def list_deliveries(
        self,
        channel: str | None = None,
        run_id: int | None = None,
        job: str | None = None,
        limit: int = 50,
        groups: Collection[str] | None = None,
    ) -> list[DeliveryRecord]:
        """Deliveries, newest first; filters combine with AND (``groups``: only those
        about jobs of these groups)."""
        ...

    async def last_alerted(self, job: str, kind: AlertKind, channel: str) -> datetime | None:
        """When an alert of ``kind`` about ``job`` was last enqueued for ``channel``."""
        ...

    async def ended_run_ids(self, since: datetime) -> list[int]:
        """The ids of the runs in a final state (skipped included) whose ``finished_at`` is
        at or after ``since``, in order of ``finished_at`` then id."""
        ...

    async def ended_runs(self, run_ids: Sequence[int]) -> list[RunRecord]:
        """The runs with these ids, in order of ``finished_at`` then id."""
        ...

    async def previous_outcome(self, run: RunRecord) -> RunState | None:
        """The state of the job's latest run that ended before ``run`` ended, not counting
        skipped and killed runs (None: ``run`` is the job's first to end)."""
        ...

    async def has_later_attempt(self, run: RunRecord) -> bool:
        """Whether a later attempt of ``run``'s occurrence exists (a retry follows)."""
        ...

    async def recent_durations(self, job_id: int, limit: int) -> list[timedelta]:
        """How long the job's latest ``limit`` succeeded runs ran, newest first."""
        ...

    async def get_mark(self, name: str) -> datetime | None: ...

    async def set_mark(self, name: str, at: datetime) -> None: ...

    async def delete_mark(self, name: str) -> None: ...

    async def list_marks(self, prefix: str) -> list[tuple[str, datetime]]:
        """Every mark whose name starts with ``prefix``, ordered by name."""
        ...

    async def prune_deliveries(self, created_before: datetime) -> int:
        """Delete deliveries created before the instant (sent or given up, never pending);
        returns how many."""
        ...
