"""A job's specification: what users write in YAML and send to the API.

Validation lives here so the CLI (offline ``validate``), the API and ``apply`` all reject
the same things with the same field names.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    field_validator,
    model_validator,
)

from belfry.core.alerts import AlertRule, valid_channel_names
from belfry.core.chains import AfterSpec, after_input, describe_after
from belfry.core.durations import Duration
from belfry.core.env_secrets import EnvValue, redacted_env
from belfry.core.names import NAME_RULE, JobKey, is_valid_name
from belfry.core.schedules import (
    DstGap,
    DstRepeat,
    DstRules,
    NoSchedule,
    Schedule,
    ScheduleError,
    bound_schedule,
    parse_schedule,
    parse_timezone,
)
from belfry.core.sizes import parse_memory_mb

__all__ = [
    "DstSpec",
    "Duration",
    "HttpSpec",
    "JobKey",
    "JobSpec",
    "MisfirePolicy",
    "OverlapPolicy",
    "ResourcesSpec",
    "RetentionSpec",
    "RetrySpec",
]


def _rfc3339(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


class OverlapPolicy(StrEnum):
    ALLOW = "allow"
    FORBID = "forbid"
    REPLACE = "replace"
    QUEUE = "queue"


class MisfirePolicy(StrEnum):
    SKIP = "skip"
    RUN_ONCE = "run_once"
    RUN_ALL = "run_all"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class RetrySpec(_Strict):
    max: int = Field(default=0, ge=0, le=100)
    backoff: Duration = timedelta(seconds=10)
    max_backoff: Duration = timedelta(minutes=10)


class RetentionSpec(_Strict):
    keep_runs: int | None = Field(default=None, ge=1)
    keep_days: float | None = Field(default=None, gt=0)


class ResourcesSpec(_Strict):
    """What one run uses of its worker's declared capacity (``belfry worker --cpu --memory``)."""

    cpu: float | None = Field(default=None, gt=0)
    memory: str | None = None

    @field_validator("memory")
    @classmethod
    def _valid_memory(cls, value: str | None) -> str | None:
        if value is not None:
            parse_memory_mb(value)
        return value

    @property
    def memory_mb(self) -> int | None:
        return None if self.memory is None else parse_memory_mb(self.memory)


class HttpSpec(_Strict):
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    url: str = Field(pattern=r"^https?://\S+$")
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    expect_status: list[int] = Field(default_factory=lambda: [200])


class DstSpec(_Strict):
    """What the job's fixed-time cron expressions do around DST changes.

    ``gap``: an occurrence whose wall-clock time is skipped by a spring-forward change runs
    right after the gap (``run_after``, Debian cron) or not that day (``skip``).
    ``repeat``: an occurrence whose wall-clock time happens twice in an autumn change runs
    in the first pass (``once``, Debian cron) or in both (``both``). Wildcard expressions
    (``*/15 * * * *``, ``0 */2 * * *``) run at every real instant whatever the rules.
    """

    gap: DstGap = "run_after"
    repeat: DstRepeat = "once"

    def rules(self) -> DstRules:
        return DstRules(gap=self.gap, repeat=self.repeat)


class JobSpec(_Strict):
    name: str
    group: str = "default"
    # One schedule, or a non-empty list of them (the job fires at their union); none for
    # a job that runs ``after`` others.
    schedule: str | Annotated[list[str], Strict()] | None = None
    # Run after other jobs (``belfry.core.chains``); ``after: [a, b]`` is short for
    # ``after: {jobs: [a, b]}``, ``after_any: [a, b]`` for ``{jobs: [a, b], any: true}``.
    after: Annotated[AfterSpec | None, BeforeValidator(after_input)] = None
    timezone: str = "UTC"
    # DST rules for fixed-time cron expressions (defaults: Debian cron's).
    dst: DstSpec = Field(default_factory=DstSpec)
    # Optional bounds: no occurrence before ``start`` nor after ``end``.
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    # Up to this much later than each instant, the same for the same occurrence.
    jitter: Duration | None = None
    # Calendars by name: no occurrence inside any ``exclude`` calendar, and, when ``only``
    # is given, none outside all of them. An occurrence ruled out is skipped (reason
    # ``calendar:<name>``) or, with ``on_excluded: defer``, runs when the calendars allow.
    exclude: list[str] = Field(default_factory=list)
    only: list[str] = Field(default_factory=list)
    on_excluded: Literal["skip", "defer"] = "skip"
    command: str | list[str] | None = None
    http: HttpSpec | None = None
    pool: str = "default"
    tags: dict[str, str] = Field(default_factory=dict)
    target: Literal["any", "all"] = "any"
    # A user to run the command as (the worker must run as root).
    run_as: str | None = None
    # A run whose worker went silent is marked lost; ``retry`` starts a new attempt (at
    # least one, whatever ``retries`` says), ``fail`` leaves it lost (at most once).
    on_worker_lost: Literal["fail", "retry"] = "fail"
    # While its group is in maintenance an occurrence is skipped (reason ``maintenance``);
    # with ``defer``, the skipped occurrences become one run when the maintenance ends.
    on_maintenance: Literal["skip", "defer"] = "skip"
    timeout: Duration | None = None
    kill_grace: Duration = timedelta(seconds=10)
    overlap: OverlapPolicy = OverlapPolicy.ALLOW
    queue_max: int = Field(default=1, ge=1, le=1000)
    misfire: MisfirePolicy = MisfirePolicy.RUN_ONCE
    misfire_max: int = Field(default=10, ge=1, le=10000)
    starting_deadline: Duration | None = None
    retries: RetrySpec = Field(default_factory=RetrySpec)
    success_exit_codes: list[int] = Field(default_factory=lambda: [0])
    failure_pattern: str | None = None
    # A value is a string or a secret (``belfry.core.env_secrets``): ``{secret: VALUE}``
    # from users, stored sealed, shown as ``{keep: true}``.
    env: dict[str, EnvValue] = Field(default_factory=dict)
    working_dir: str | None = None
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    retention: RetentionSpec = Field(default_factory=RetentionSpec)
    # Channels for the usual alerts (failure, recovery, missed), and rules of its own
    # (``belfry.core.alerts``).
    notify: list[str] = Field(default_factory=list)
    alerts: list[AlertRule] = Field(default_factory=list)
    paused: bool = False
    description: str = ""

    @field_validator("name", "group")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not is_valid_name(value):
            raise ValueError(NAME_RULE)
        return value

    @field_validator("exclude", "only")
    @classmethod
    def _valid_calendar_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not is_valid_name(name):
                raise ValueError(f"{name!r} is not a calendar name: {NAME_RULE}")
        if len(set(value)) != len(value):
            raise ValueError("names a calendar twice")
        return value

    @field_validator("notify")
    @classmethod
    def _valid_channel_names(cls, value: list[str]) -> list[str]:
        return valid_channel_names(value)

    @property
    def channels(self) -> set[str]:
        """Every channel the job alerts, by ``notify`` or by one of its ``alerts``."""
        return set(self.notify) | {name for rule in self.alerts for name in rule.notify}

    @field_validator("schedule")
    @classmethod
    def _valid_schedule(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is None:
            return value
        try:
            parse_schedule(value)
        except ScheduleError as error:
            raise ValueError(str(error)) from None
        return value

    @model_validator(mode="before")
    @classmethod
    def _after_any(cls, data: Any) -> Any:
        """``after_any: [a, b]`` is ``after: {jobs: [a, b], any: true}``."""
        if isinstance(data, dict) and "after_any" in data:
            data = dict(data)
            jobs = data.pop("after_any")
            if "after" in data:
                raise ValueError("after_any: give after or after_any, not both")
            data["after"] = {"jobs": jobs, "any": True} if isinstance(jobs, list) else jobs
        return data

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        try:
            parse_timezone(value)
        except ScheduleError as error:
            raise ValueError(str(error)) from None
        return value

    @field_validator("command")
    @classmethod
    def _valid_command(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is not None and (not value or (isinstance(value, list) and not value[0])):
            raise ValueError("must not be empty")
        return value

    @field_validator("failure_pattern")
    @classmethod
    def _valid_pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as error:
                raise ValueError(f"not a valid regular expression: {error}") from None
        return value

    @field_validator("env")
    @classmethod
    def _valid_env(cls, value: dict[str, EnvValue]) -> dict[str, EnvValue]:
        for key in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        if self.schedule is None and self.after is None:
            raise ValueError("schedule: a job needs a schedule, or after: to run after other jobs")
        if self.schedule is not None and self.after is not None:
            raise ValueError(
                "after: a job runs on its schedule or after other jobs, not both: remove schedule"
            )
        if self.after is not None:
            try:
                upstream = self.after.keys(self.group)
            except ValueError as error:
                raise ValueError(f"after: {error}") from None
            if str(self.key) in upstream:
                raise ValueError("after: a job cannot run after itself")
        if (self.command is None) == (self.http is None):
            raise ValueError("command: a job needs exactly one of 'command' or 'http'")
        if self.on_excluded == "defer" and not (self.exclude or self.only):
            raise ValueError("on_excluded: 'defer' needs calendars in 'exclude' or 'only'")
        both = sorted(set(self.exclude) & set(self.only))
        if both:
            raise ValueError(f"only: calendar {both[0]!r} is also in 'exclude'")
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ValueError(
                f"end: {_rfc3339(self.end)} is before start {_rfc3339(self.start)}; "
                "the job would never run"
            )
        return self

    @property
    def key(self) -> JobKey:
        return JobKey(group=self.group, name=self.name)

    @property
    def calendars(self) -> list[str]:
        """Every calendar the job names, ``exclude`` first."""
        return [*self.exclude, *(name for name in self.only if name not in self.exclude)]

    def parsed_schedule(self) -> Schedule:
        """The schedule in the job's zone and DST rules, ``H`` seeded by ``group/name``,
        within the job's ``start``/``end`` bounds."""
        if self.schedule is None:
            assert self.after is not None  # checked by _consistent
            return NoSchedule(describe_after(self.after, self.group), parse_timezone(self.timezone))
        schedule = parse_schedule(
            self.schedule, self.timezone, seed=str(self.key), dst=self.dst.rules()
        )
        return bound_schedule(schedule, self.start, self.end)

    def to_document(self) -> dict[str, Any]:
        """The spec as JSON-ready data, without defaults (what ``export`` writes, the API
        shows and the audit log keeps): every secret as ``{keep: true}``, never its value
        nor its sealed form."""
        document = self.model_dump(mode="json", exclude_defaults=True)
        if "env" in document:
            document["env"] = redacted_env(self.env)
        return document
