"""Alert rules, and what an alert says: the notifier's pure decisions.

A job alerts through the rules of its own ``alerts:`` and ``notify:`` and those of its
group (``groups:`` in job files): ``notify: [CHANNEL]`` is short for the three rules users
expect of a cron (INTERFACE.md): the first failure of a streak, the recovery after it, and
every missed occurrence. A failure streak re-alerts at most once per ``realert``
interval (the rule's, else the channel's, default hourly).

Kinds:
- ``failure``: a run ended failed, timed_out or lost and no further attempt follows.
- ``recovery``: a run succeeded after a run of the job that had failed.
- ``missed``: an occurrence was skipped (its reason says why), or the scheduler has not
  fired a due occurrence (the built-in dead man's switch, checked by every server).
- ``late``: a run started, or has still not started, more than ``after`` past its instant.
- ``too_long``: a run still running after ``after``, or after ``factor`` times the median
  duration of the job's recent successful runs.
- ``too_short``: a run that succeeded in less than ``under`` (a job that did nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from belfry.core.durations import Duration
from belfry.core.names import NAME_RULE, is_valid_name
from belfry.core.states import RunState

__all__ = [
    "FAILURE_STATES",
    "Alert",
    "AlertKind",
    "AlertRule",
    "BoundRule",
    "GroupSpec",
    "bind_rules",
    "failure_alert_due",
    "format_alert_time",
    "valid_channel_names",
]

FAILURE_STATES = frozenset({RunState.FAILED, RunState.TIMED_OUT, RunState.LOST})


class AlertKind(StrEnum):
    FAILURE = "failure"
    RECOVERY = "recovery"
    MISSED = "missed"
    LATE = "late"
    TOO_LONG = "too_long"
    TOO_SHORT = "too_short"
    # Sent by ``belfry channels test``, never by a rule.
    TEST = "test"


# What ``notify: [CHANNEL]`` alone means.
DEFAULT_KINDS = (AlertKind.FAILURE, AlertKind.RECOVERY, AlertKind.MISSED)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def valid_channel_names(value: list[str]) -> list[str]:
    """``value`` if each is a channel name and none is repeated, else ValueError."""
    for name in value:
        if not is_valid_name(name):
            raise ValueError(f"{name!r} is not a channel name: {NAME_RULE}")
    if len(set(value)) != len(value):
        raise ValueError("names a channel twice")
    return value


class AlertRule(_Strict):
    on: Literal["failure", "recovery", "missed", "late", "too_long", "too_short"]
    # Channels; empty: the ``notify`` channels of the job (or group) the rule belongs to.
    notify: list[str] = Field(default_factory=list)
    after: Duration | None = None
    factor: float | None = Field(default=None, gt=1, le=1000)
    under: Duration | None = None
    realert: Duration | None = None

    _check_notify = field_validator("notify")(valid_channel_names)

    @model_validator(mode="after")
    def _thresholds(self) -> AlertRule:
        wanted = {
            "late": {"after"},
            "too_long": {"after", "factor"},
            "too_short": {"under"},
        }.get(self.on, set())
        given = {name for name in ("after", "factor", "under") if getattr(self, name) is not None}
        if wanted and not given & wanted:
            need = " or ".join(f"'{name}'" for name in sorted(wanted))
            raise ValueError(f"on: '{self.on}' needs {need}")
        extra = sorted(given - wanted)
        if extra:
            raise ValueError(f"{extra[0]}: does not apply to 'on: {self.on}'")
        if self.after is not None and self.after <= timedelta(0):
            raise ValueError("after: must be longer than 0s")
        if self.under is not None and self.under <= timedelta(0):
            raise ValueError("under: must be longer than 0s")
        return self


class GroupSpec(_Strict):
    """Settings of a group of jobs (``groups:`` in job files): alerts for all its jobs."""

    name: str
    notify: list[str] = Field(default_factory=list)
    alerts: list[AlertRule] = Field(default_factory=list)
    description: str = ""

    _check_notify = field_validator("notify")(valid_channel_names)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not is_valid_name(value):
            raise ValueError(NAME_RULE)
        return value

    @property
    def channels(self) -> set[str]:
        return set(self.notify) | {name for rule in self.alerts for name in rule.notify}


@dataclass(frozen=True)
class BoundRule:
    """One rule with the one channel it alerts: what the notifier evaluates."""

    kind: AlertKind
    channel: str
    after: timedelta | None = None
    factor: float | None = None
    under: timedelta | None = None
    realert: timedelta | None = None


def _bind(notify: Sequence[str], alerts: Iterable[AlertRule]) -> list[BoundRule]:
    bound = [BoundRule(kind, channel) for channel in notify for kind in DEFAULT_KINDS]
    for rule in alerts:
        for channel in rule.notify or notify:
            bound.append(
                BoundRule(
                    AlertKind(rule.on), channel, rule.after, rule.factor, rule.under, rule.realert
                )
            )
    return bound


def bind_rules(
    job_notify: Sequence[str],
    job_alerts: Iterable[AlertRule],
    group: GroupSpec | None,
) -> list[BoundRule]:
    """The job's rules then its group's, each once (the same rule from both alerts once)."""
    bound = _bind(job_notify, job_alerts)
    if group is not None:
        bound += _bind(group.notify, group.alerts)
    return list(dict.fromkeys(bound))


def failure_alert_due(
    rule: BoundRule,
    channel_realert: timedelta | None,
    streak_started: bool,
    last_alerted: datetime | None,
    now: datetime,
) -> bool:
    """Whether a failure alerts: always at the start of a streak, later at most once per
    realert interval (the rule's, else the channel's; None: never again)."""
    if streak_started or last_alerted is None:
        return True
    interval = rule.realert if rule.realert is not None else channel_realert
    return interval is not None and now - last_alerted >= interval


def format_alert_time(instant: datetime | None) -> str | None:
    return None if instant is None else instant.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Alert:
    """What a notification says; the JSON body of a webhook is ``to_document()``."""

    kind: AlertKind
    job: str  # group/name
    summary: str  # one line, e.g. "failed with exit code 3"
    at: datetime
    run_id: int | None = None
    attempt: int | None = None
    scheduled_for: datetime | None = None
    state: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    # The last lines of output, masked like any output (failures only).
    output_tail: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return f"{self.job}: {self.summary}"

    def text(self) -> str:
        """A plain-text body: the title, then one ``key: value`` line per known fact."""
        lines = [self.title, ""]
        facts: list[tuple[str, Any]] = [
            ("kind", self.kind.value),
            ("job", self.job),
            ("run", self.run_id),
            ("attempt", self.attempt),
            ("scheduled for", format_alert_time(self.scheduled_for)),
            ("state", self.state),
            ("exit code", self.exit_code),
            ("reason", self.reason),
            ("at", format_alert_time(self.at)),
        ]
        lines += [f"{name}: {value}" for name, value in facts if value is not None]
        if self.output_tail:
            lines += ["", "output (last lines):", self.output_tail]
        return "\n".join(lines)

    def to_document(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "job": self.job,
            "title": self.title,
            "summary": self.summary,
            "at": format_alert_time(self.at),
            "run_id": self.run_id,
            "attempt": self.attempt,
            "scheduled_for": format_alert_time(self.scheduled_for),
            "state": self.state,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "output_tail": self.output_tail,
            "details": self.details,
        }

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Alert:
        def instant(key: str) -> datetime | None:
            value = document.get(key)
            return None if value is None else datetime.fromisoformat(value)

        at = instant("at")
        assert at is not None, "an alert document always has 'at'"
        return cls(
            kind=AlertKind(document["kind"]),
            job=document["job"],
            summary=document["summary"],
            at=at,
            run_id=document.get("run_id"),
            attempt=document.get("attempt"),
            scheduled_for=instant("scheduled_for"),
            state=document.get("state"),
            exit_code=document.get("exit_code"),
            reason=document.get("reason"),
            output_tail=document.get("output_tail"),
            details=document.get("details") or {},
        )
