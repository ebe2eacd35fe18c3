"""Drift (GitOps): how a job differs from what files last applied.

Jobs kept in git are applied with ``belfry apply -f``; someone may still pause a job in
the UI or change it through the API or the UI's apply page. Belfry keeps the spec as
files last applied it next to the job, so it can show those changes (``belfry diff``)
and refuse to overwrite them silently (``apply`` without ``--force``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from belfry.core.env_secrets import EnvValue, SealedSecret, redacted_env
from belfry.core.jobs import JobSpec
from belfry.core.records import JobRecord

__all__ = ["Drift", "field_changes", "job_drift", "live_spec"]

# How a change shows a secret given a new value: that it changed, never what to.
_NEW_SECRET: dict[str, Any] = {"secret": "***"}


def live_spec(job: JobRecord) -> JobSpec:
    """The job as it is now: its spec, paused or not as it stands (a pause from the UI
    or the CLI changes the job, not the spec it was applied with)."""
    if job.spec.paused == job.paused:
        return job.spec
    return job.spec.model_copy(update={"paused": job.paused})


def field_changes(before: JobSpec, after: JobSpec) -> dict[str, tuple[Any, Any]]:
    """field -> (before, after) for the fields that differ, as they may be shown (and
    audited): secrets never in clear."""
    old = before.model_dump(mode="json")
    new = after.model_dump(mode="json")
    changes = {
        name: (old.get(name), value) for name, value in new.items() if old.get(name) != value
    }
    if "env" in changes:
        changes["env"] = _env_change(before.env, after.env)
    return changes


def _env_change(
    before: dict[str, EnvValue], after: dict[str, EnvValue]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Secrets as ``{keep: true}`` where they stay as stored, ``{secret: "***"}`` where
    they get a new value."""
    shown_after = redacted_env(after)
    for name, value in after.items():
        if isinstance(value, SealedSecret) and before.get(name) != value:
            shown_after[name] = dict(_NEW_SECRET)
    return redacted_env(before), shown_after


@dataclass(frozen=True)
class Drift:
    """What changed in a job since files last applied it, and who changed it last."""

    # field -> (as files applied it, as it is now); empty when the job was not made by
    # files at all (created in the UI or through the API).
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    changed_by: str | None = None
    changed_at: datetime | None = None

    @property
    def created_outside_files(self) -> bool:
        return not self.fields

    def summary(self) -> str:
        """e.g. ``paused, timeout changed by alice at 2026-11-30T10:00:00Z``."""
        what = (
            "created outside files"
            if self.created_outside_files
            else (", ".join(sorted(self.fields)) + " changed")
        )
        if self.changed_by:
            what += f" by {self.changed_by}"
        if self.changed_at:
            what += f" at {self.changed_at.isoformat().replace('+00:00', 'Z')}"
        return what


def job_drift(job: JobRecord) -> Drift | None:
    """How ``job`` differs from what files last applied (None: it does not)."""
    if job.applied_spec is None:
        return Drift(changed_by=job.changed_by, changed_at=job.changed_at)
    live = live_spec(job)
    # Specs of the same text are one parsed object (the store's cache): most jobs stop
    # here, without the two dumps a comparison field by field costs (apply of 10,000).
    if job.applied_spec is live or job.applied_spec == live:
        return None
    changes = field_changes(job.applied_spec, live)
    if not changes:
        return None
    return Drift(changes, job.changed_by, job.changed_at)
