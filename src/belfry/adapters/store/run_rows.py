"""Reading a row of the runs table: the one place that knows its columns' meaning."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from belfry.core.records import RunRecord, Trigger
from belfry.core.states import RunState

__all__ = ["run_record"]


def run_record(row: Row[Any]) -> RunRecord:
    data = row._mapping
    return RunRecord(
        id=data["id"],
        job_id=data["job_id"],
        job=data["job"],
        scheduled_for=data["scheduled_for"],
        attempt=data["attempt"],
        trigger=Trigger(data["trigger"]),
        state=RunState(data["state"]),
        reason=data["reason"] or None,
        not_before=data["not_before"],
        exit_code=data["exit_code"],
        target=data["target"] or None,
        worker=data["worker"],
        host=data["host"],
        pid=data["pid"],
        kill_requested=bool(data["kill_requested"]),
        created_at=data["created_at"],
        claimed_at=data["claimed_at"],
        started_at=data["started_at"],
        finished_at=data["finished_at"],
    )
