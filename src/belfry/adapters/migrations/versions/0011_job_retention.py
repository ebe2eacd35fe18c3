"""Retention by SQL: each job's own keep_runs / keep_days as columns, so the pruner finds
what to delete with queries instead of reading and parsing every job's spec; an index on
the end of pauses, which the scheduler reads every pass (a scan of 100,000 jobs).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("keep_runs", sa.Integer(), nullable=True))
    op.add_column("jobs", sa.Column("keep_days", sa.Float(), nullable=True))
    # The jobs from before take their values from their specs (JSON text).
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE jobs SET"
            " keep_runs = (spec::json #>> '{retention,keep_runs}')::integer,"
            " keep_days = (spec::json #>> '{retention,keep_days}')::double precision"
        )
    else:
        op.execute(
            "UPDATE jobs SET"
            " keep_runs = json_extract(spec, '$.retention.keep_runs'),"
            " keep_days = json_extract(spec, '$.retention.keep_days')"
        )

    op.create_index("ix_jobs_resume_at", "jobs", ["resume_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_resume_at", table_name="jobs")
    with op.batch_alter_table("jobs") as table:
        table.drop_column("keep_days")
        table.drop_column("keep_runs")
