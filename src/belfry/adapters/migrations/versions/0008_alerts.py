"""Alerts: channels, group settings, deliveries, the notifier's marks; runs by finish time.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_index("ix_runs_finished_at", "runs", ["finished_at"])
    op.create_table(
        "channels",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("redacted", sa.Text(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_channels"),
    )
    op.create_table(
        "group_settings",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_group_settings"),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("channel", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("job", sa.String(201), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column("dedup_key", sa.String(400), nullable=False),
        sa.Column("alert", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _TIME, nullable=False),
        sa.Column("lease_until", _TIME, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("sent_at", _TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.UniqueConstraint("dedup_key", name="uq_deliveries_dedup_key"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_deliveries_state_next_attempt_at", "deliveries", ["state", "next_attempt_at"]
    )
    op.create_index("ix_deliveries_run_id", "deliveries", ["run_id"])
    op.create_index("ix_deliveries_channel_id", "deliveries", ["channel", "id"])
    op.create_index(
        "ix_deliveries_job_kind_channel_created_at",
        "deliveries",
        ["job", "kind", "channel", "created_at"],
    )
    op.create_table(
        "notifier_marks",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_notifier_marks"),
    )


def downgrade() -> None:
    op.drop_table("notifier_marks")
    for index in (
        "ix_deliveries_job_kind_channel_created_at",
        "ix_deliveries_channel_id",
        "ix_deliveries_run_id",
        "ix_deliveries_state_next_attempt_at",
    ):
        op.drop_index(index, "deliveries")
    op.drop_table("deliveries")
    op.drop_table("group_settings")
    op.drop_table("channels")
    op.drop_index("ix_runs_finished_at", "runs")
