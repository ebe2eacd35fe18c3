"""Deliveries: one alert to one channel, kept as a row from decision to sent (or given up).

The notifier decides an alert and enqueues a delivery under a de-duplication key that
names what it is about (``failure:run:42:oncall``): deciding twice, on two servers or
after a failover, enqueues it once. Any server then sends due deliveries, each taken with
a short lease, and retried with exponential backoff until ``MAX_ATTEMPTS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from belfry.core.alerts import Alert, AlertKind, GroupSpec

__all__ = [
    "MAX_ATTEMPTS",
    "AlertingWrites",
    "ChannelRecord",
    "ChannelWrite",
    "DeliveryRecord",
    "DeliveryState",
    "GroupRecord",
    "NewDelivery",
    "retry_delay",
]

# 10 attempts with the delays below span about 2.5 hours: long enough for a chat service's
# outage, short enough that a wrong URL is reported failed the same day.
MAX_ATTEMPTS = 10
_FIRST_DELAY = timedelta(seconds=5)
_MAX_DELAY = timedelta(minutes=30)


class DeliveryState(StrEnum):
    PENDING = "pending"  # waiting for its (next) attempt
    SENDING = "sending"  # taken by a server, under a lease
    SENT = "sent"
    FAILED = "failed"  # given up: a permanent error, or MAX_ATTEMPTS used


def retry_delay(attempts: int) -> timedelta:
    """How long after its ``attempts``-th failed attempt a delivery is tried again:
    5 s, 10 s, 20 s, ... doubling, at most 30 min."""
    doublings = min(max(attempts - 1, 0), 20)  # capped: timedelta overflows far beyond
    return min(_FIRST_DELAY * (1 << doublings), _MAX_DELAY)


@dataclass(frozen=True)
class NewDelivery:
    channel: str
    alert: Alert
    # Deliveries with the same key are one delivery (the first enqueued wins).
    dedup_key: str

    @property
    def kind(self) -> AlertKind:
        return self.alert.kind


@dataclass(frozen=True)
class DeliveryRecord:
    id: int
    channel: str
    kind: AlertKind
    job: str
    run_id: int | None
    dedup_key: str
    alert: Alert
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


@dataclass(frozen=True)
class ChannelRecord:
    """A stored channel: its spec sealed (``sealed``: a Fernet token of the spec's JSON),
    a digest of that JSON to tell an unchanged re-apply, and the redacted spec to show."""

    name: str
    sealed: str
    digest: str
    redacted: dict[str, object]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class GroupRecord:
    spec: GroupSpec
    created_at: datetime
    updated_at: datetime

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class ChannelWrite:
    """A channel as ``apply`` stores it (see ChannelRecord)."""

    name: str
    sealed: str
    digest: str
    redacted: dict[str, object]


@dataclass(frozen=True)
class AlertingWrites:
    """Channels and group settings an ``apply`` creates, replaces or deletes, in the same
    transaction as its jobs."""

    channels: Sequence[ChannelWrite] = ()
    delete_channels: Sequence[str] = ()
    groups: Sequence[GroupSpec] = ()
    delete_groups: Sequence[str] = ()
