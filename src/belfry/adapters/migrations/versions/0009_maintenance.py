"""Maintenance windows, pauses that end by themselves, and a server-side worker drain.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "maintenance",
        sa.Column("scope", sa.String(100), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("started_at", _TIME, nullable=False),
        sa.Column("started_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("scope", name="pk_maintenance"),
    )
    op.add_column("jobs", sa.Column("resume_at", _TIME, nullable=True))
    op.add_column(
        "workers",
        sa.Column("drain_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    with op.batch_alter_table("workers") as table:
        table.drop_column("drain_requested")
    with op.batch_alter_table("jobs") as table:
        table.drop_column("resume_at")
    op.drop_table("maintenance")
