"""Reading a row of the jobs table: the one place that knows its columns' meaning."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Row

from belfry.core.jobs import JobSpec
from belfry.core.records import JobRecord

__all__ = ["job_record"]

# How many parsed job specs stay cached (~5 KB each): the pages and the scheduler's due
# jobs of the moment, not a whole fleet (100,000 of them held 560 MB).
_PARSED_SPECS = 4096


@functools.lru_cache(maxsize=_PARSED_SPECS)
def _job_spec(text: str) -> JobSpec:
    """A stored spec, parsed once per distinct text: validating a spec (its schedule
    above all) costs ~0.1 ms, which a list of 10,000 jobs paid on every read. JobSpec is
    frozen, so one parsed spec is shared by every read of the same text."""
    return JobSpec.model_validate_json(text)


def job_record(row: Row[Any]) -> JobRecord:
    data = row._mapping
    return JobRecord(
        id=data["id"],
        spec=_job_spec(data["spec"]),
        next_fire_at=data["next_fire_at"],
        paused=bool(data["paused"]),
        pause_note=data["pause_note"],
        created_at=data["created_at"],
        updated_at=data["updated_at"],
        resume_at=data["resume_at"],
        applied_spec=_job_spec(applied) if (applied := data["applied_spec"]) else None,
        changed_by=data["changed_by"],
        changed_at=data["changed_at"],
    )
