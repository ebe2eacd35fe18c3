"""Initial schema: jobs, runs, run events, output chunks, tokens.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Types spelled out here rather than imported, so this revision never changes under us.
_TIME = sa.DateTime(timezone=True)  # timestamptz on PostgreSQL, fixed-width text on SQLite
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("group", sa.String(100), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("paused", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("pause_note", sa.Text(), nullable=True),
        sa.Column("next_fire_at", _TIME, nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.UniqueConstraint("group", "name", name="uq_jobs_group_name"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_jobs_next_fire_at_id", "jobs", ["next_fire_at", "id"])

    op.create_table(
        "runs",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("job", sa.String(201), nullable=False),
        sa.Column("scheduled_for", _TIME, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("not_before", _TIME, nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("worker", sa.Text(), nullable=True),
        sa.Column("host", sa.Text(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("kill_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("claimed_at", _TIME, nullable=True),
        sa.Column("started_at", _TIME, nullable=True),
        sa.Column("finished_at", _TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_runs_job_id_jobs", ondelete="CASCADE"
        ),
        sa.UniqueConstraint(
            "job_id", "scheduled_for", "attempt", name="uq_runs_job_id_scheduled_for_attempt"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_runs_state_not_before", "runs", ["state", "not_before"])
    op.create_index("ix_runs_job_id_id", "runs", ["job_id", "id"])
    op.create_index("ix_runs_job_id_state", "runs", ["job_id", "state"])

    op.create_table(
        "run_events",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("run_id", _BIG_ID, nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(16), nullable=False),
        sa.Column("host", sa.Text(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_run_events"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_run_events_run_id_runs", ondelete="CASCADE"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_run_events_run_id", "run_events", ["run_id"])

    op.create_table(
        "output_chunks",
        sa.Column("run_id", _BIG_ID, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("stream", sa.String(16), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "seq", name="pk_output_chunks"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_output_chunks_run_id_runs", ondelete="CASCADE"
        ),
    )

    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("pools", sa.Text(), nullable=False),
        sa.Column("secret_hash", sa.String(255), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tokens"),
        sa.UniqueConstraint("secret_hash", name="uq_tokens_secret_hash"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("tokens")
    op.drop_table("output_chunks")
    op.drop_table("run_events")
    op.drop_table("runs")
    op.drop_table("jobs")
