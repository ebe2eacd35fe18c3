"""Each server node's clock offset from the database's, as it last measured it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Seconds the node's clock is behind (+) or ahead (-) of the database's; NULL until
    # the node has measured it.
    op.add_column("nodes", sa.Column("clock_offset", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as table:
        table.drop_column("clock_offset")
