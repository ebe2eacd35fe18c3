"""Run targets: ``target: all`` makes one run per worker, so the occurrence key gains the
worker a run is for (``''`` for ``target: any``, which every existing run is).

SQLite cannot change a table's constraints in place: batch mode rebuilds ``runs``. The
rebuild keeps AUTOINCREMENT and the table's high-water mark (ids are never reused), and
runs with foreign keys off (``open_store`` migrates SQLite so), or dropping the old table
would cascade to every run event and output chunk.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 00:00:00
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_KEY = "uq_runs_job_id_scheduled_for_attempt"
_NEW_KEY = "uq_runs_job_id_scheduled_for_attempt_target"
_OLD_COLUMNS = ["job_id", "scheduled_for", "attempt"]
_NEW_COLUMNS = [*_OLD_COLUMNS, "target"]


def upgrade() -> None:
    target = sa.Column("target", sa.String(200), server_default="", nullable=False)
    if op.get_bind().dialect.name != "sqlite":
        op.add_column("runs", target)
        op.drop_constraint(_OLD_KEY, "runs", type_="unique")
        op.create_unique_constraint(_NEW_KEY, "runs", _NEW_COLUMNS)
        return
    with _rebuilt_runs() as batch:
        batch.add_column(target)
        batch.drop_constraint(_OLD_KEY, type_="unique")
        batch.create_unique_constraint(_NEW_KEY, _NEW_COLUMNS)


def downgrade() -> None:
    # Runs of one occurrence on several targets cannot share the old key: keep the first
    # of each. Their events and output go explicitly (foreign keys may be off here).
    doomed = (
        "SELECT id FROM runs WHERE id NOT IN "
        "(SELECT min(id) FROM runs GROUP BY job_id, scheduled_for, attempt)"
    )
    op.execute(f"DELETE FROM run_events WHERE run_id IN ({doomed})")
    op.execute(f"DELETE FROM output_chunks WHERE run_id IN ({doomed})")
    op.execute(f"DELETE FROM runs WHERE id IN ({doomed})")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(_NEW_KEY, "runs", type_="unique")
        op.create_unique_constraint(_OLD_KEY, "runs", _OLD_COLUMNS)
        op.drop_column("runs", "target")
        return
    with _rebuilt_runs() as batch:
        batch.drop_constraint(_NEW_KEY, type_="unique")
        batch.create_unique_constraint(_OLD_KEY, _OLD_COLUMNS)
        batch.drop_column("target")


@contextmanager
def _rebuilt_runs() -> Iterator[BatchOperations]:
    """A batch rebuild of SQLite's ``runs`` that keeps AUTOINCREMENT and its high-water
    mark: the new table would otherwise count on from its largest remaining id, reusing
    the ids of deleted newest runs."""
    bind = op.get_bind()
    seq = bind.scalar(sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'runs'"))
    with op.batch_alter_table(
        "runs", recreate="always", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        yield batch
    if seq is not None:
        params = {"seq": seq}
        updated = bind.execute(
            sa.text("UPDATE sqlite_sequence SET seq = max(seq, :seq) WHERE name = 'runs'"), params
        )
        if not updated.rowcount:
            bind.execute(
                sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('runs', :seq)"), params
            )
