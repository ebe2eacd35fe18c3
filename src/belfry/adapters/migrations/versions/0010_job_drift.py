"""GitOps drift: each job keeps the spec files last applied, and who changed it last;
job chains: the jobs each job runs after.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("jobs", sa.Column("applied_spec", sa.Text(), nullable=True))
    op.add_column("jobs", sa.Column("changed_by", sa.String(200), nullable=True))
    op.add_column("jobs", sa.Column("changed_at", _TIME, nullable=True))
    # Jobs from before: as last applied, so the first apply after the upgrade does not
    # take them all for changes made elsewhere (a pause since then still shows).
    op.execute("UPDATE jobs SET applied_spec = spec")
    op.add_column("jobs", sa.Column("after_jobs", sa.Text(), nullable=True))
    op.create_index("ix_jobs_after_jobs", "jobs", ["after_jobs"])


def downgrade() -> None:
    op.drop_index("ix_jobs_after_jobs", table_name="jobs")
    with op.batch_alter_table("jobs") as table:
        table.drop_column("after_jobs")
        table.drop_column("changed_at")
        table.drop_column("changed_by")
        table.drop_column("applied_spec")
