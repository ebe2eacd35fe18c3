"""A column of each job's newest run, for queries over jobs: one walk down the runs'
(job_id, id) index per job, newest first, so no run list is read (max(id) ... GROUP BY
job_id made PostgreSQL hash every run of the table)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, ScalarSelect, select

from belfry.adapters.store.schema import jobs, runs

__all__ = ["newest_run"]


def newest_run(column: Column[Any]) -> ScalarSelect[Any]:
    """``column`` (of ``runs``) of the newest run of the job in the enclosing query over
    ``jobs`` (NULL when it has none)."""
    return (
        select(column)
        .where(runs.c.job_id == jobs.c.id)
        .order_by(runs.c.id.desc())
        .limit(1)
        .correlate(jobs)
        .scalar_subquery()
    )
