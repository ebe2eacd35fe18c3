"""The store's tables, as SQLAlchemy Core metadata shared by SQLite and PostgreSQL.

The migrations in ``belfry/adapters/migrations`` create exactly these tables; a test
compares the two so they cannot drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = [
    "BigId",
    "UtcDateTime",
    "audit",
    "calendars",
    "channels",
    "deliveries",
    "grants",
    "group_settings",
    "jobs",
    "leadership",
    "maintenance",
    "metadata",
    "nodes",
    "notifier_marks",
    "output_chunks",
    "run_events",
    "runs",
    "sessions",
    "tokens",
    "users",
    "workers",
]


class UtcDateTime(TypeDecorator[datetime]):
    """An instant: aware UTC datetimes in, aware UTC datetimes out, microseconds kept.

    SQLite stores naive UTC text in one fixed-width format (so text order is time order
    and equality is exact); PostgreSQL stores ``timestamptz``.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return dialect.type_descriptor(DateTime(timezone=dialect.name == "postgresql"))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            # A naive time has no defined instant; guessing would corrupt history.
            raise ValueError(f"naive datetime {value.isoformat()} given to the store")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Ids are never reused (SQLite needs AUTOINCREMENT for that): a worker reporting on a
# deleted run, or a link to a deleted job, must not land on a newer one.
#
# Run and event ids grow by hundreds per second, past 2**31 within months. SQLite needs
# plain INTEGER for an auto-incrementing rowid primary key (which is 64-bit anyway).
BigId = BigInteger().with_variant(Integer(), "sqlite")

# Deterministic constraint names, so later migrations (and SQLite batch mode) can name them.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("group", String(100), nullable=False),
    Column("name", String(100), nullable=False),
    Column("spec", Text, nullable=False),  # JobSpec as JSON
    Column("paused", Boolean, nullable=False, server_default=false()),
    Column("pause_note", Text),
    # A paused job the leader resumes at this time (None: paused until resumed by hand).
    Column("resume_at", UtcDateTime),
    # GitOps: the spec as files last applied it (JSON; None: not made by files), and
    # who changed the job last and when, to say who made a drift.
    Column("applied_spec", Text),
    Column("changed_by", String(200)),
    Column("changed_at", UtcDateTime),
    # The jobs it runs after, as " GROUP/NAME ... " (None: it is not chained), so the
    # chain pass finds the few chained jobs through the index.
    Column("after_jobs", Text),
    # The spec's retention, for the pruner's queries (NULL: the server's default).
    Column("keep_runs", Integer),
    Column("keep_days", Float),
    Column("next_fire_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("group", "name"),
    Index(None, "after_jobs"),
    # The scheduler asks for the earliest end of a pause on every pass: not a table scan.
    Index(None, "resume_at"),
    # Ordered by (cursor, id) so due_jobs reads the index in order and stops at its limit.
    Index(None, "next_fire_at", "id"),
    sqlite_autoincrement=True,
)

calendars = Table(
    "calendars",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("spec", Text, nullable=False),  # CalendarSpec as JSON
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("job_id", Integer, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("job", String(201), nullable=False),  # "group/name", kept for history views
    Column("scheduled_for", UtcDateTime, nullable=False),
    Column("attempt", Integer, nullable=False),
    # The worker this run is for (``target: all`` makes one run per worker); '' for any.
    Column("target", String(200), nullable=False, server_default=""),
    Column("trigger", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", Text),
    Column("not_before", UtcDateTime, nullable=False),
    Column("exit_code", Integer),
    Column("worker", Text),
    Column("host", Text),
    Column("pid", Integer),
    Column("kill_requested", Boolean, nullable=False, server_default=false()),
    Column("created_at", UtcDateTime, nullable=False),
    Column("claimed_at", UtcDateTime),
    Column("started_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
    # The occurrence key: the database, not the scheduler, guarantees one run per attempt
    # (and per target worker, for ``target: all``).
    UniqueConstraint("job_id", "scheduled_for", "attempt", "target"),
    Index(None, "state", "not_before"),
    Index(None, "job_id", "id"),
    Index(None, "job_id", "state"),
    # The notifier reads the runs that ended since it last looked.
    Index(None, "finished_at"),
    sqlite_autoincrement=True,
)

run_events = Table(
    "run_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", BigId, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("at", UtcDateTime, nullable=False),
    Column("state", String(16), nullable=False),
    Column("actor", String(16), nullable=False),
    Column("host", Text),
    Column("pid", Integer),
    Column("exit_code", Integer),
    Column("reason", Text),
    sqlite_autoincrement=True,
)

output_chunks = Table(
    "output_chunks",
    metadata,
    Column("run_id", BigId, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("stream", String(16), nullable=False),
    Column("data", Text, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    # Re-sent chunks collide here and are dropped: output is stored exactly once.
    PrimaryKeyConstraint("run_id", "seq"),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("password_hash", Text, nullable=True),  # argon2id; NULL: no password login
    Column("global_admin", Boolean, nullable=False, server_default=false()),
    Column("disabled", Boolean, nullable=False, server_default=false()),
    Column("created_at", UtcDateTime, nullable=False),
    sqlite_autoincrement=True,
)

grants = Table(
    "grants",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("group_name", String(200), nullable=False),  # a group, or * for all
    Column("role", String(16), nullable=False),
    PrimaryKeyConstraint("user_id", "group_name"),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    Column("role", String(16), nullable=False),  # admin | worker | user
    Column("pools", Text, nullable=False),  # JSON list of pool names
    Column("secret_hash", String(255), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    # A user token acts as its user (and dies with it).
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
    sqlite_autoincrement=True,
)

sessions = Table(
    "sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),  # SHA-256 of the cookie's value
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

audit = Table(
    "audit",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", Text, nullable=False),
    Column("address", Text, nullable=True),
    Column("action", String(50), nullable=False),
    Column("group_name", String(200), nullable=True),  # NULL: not about one group
    Column("target", Text, nullable=True),
    Column("before", Text, nullable=True),  # JSON
    Column("after", Text, nullable=True),  # JSON
    Index(None, "group_name", "id"),
    sqlite_autoincrement=True,
)

workers = Table(
    "workers",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("host", Text, nullable=False),
    Column("pools", Text, nullable=False),  # JSON list
    Column("tags", Text, nullable=False),  # JSON object
    Column("slots", Integer),
    Column("cpu", Float),
    Column("memory_mb", Integer),
    Column("version", String(50), nullable=False),
    Column("state", String(16), nullable=False),
    Column("first_seen", UtcDateTime, nullable=False),
    Column("last_seen", UtcDateTime, nullable=False),
    # Set by ``belfry worker drain``: the worker is handed nothing new, whatever its
    # heartbeat says (the heartbeat rewrites ``state``, so the flag is its own column).
    Column("drain_requested", Boolean, nullable=False, server_default=false()),
)

# One row per leadership (today only "scheduler"): who leads, under which epoch (the fencing
# token every scheduler write checks), until when (database time).
leadership = Table(
    "leadership",
    metadata,
    Column("name", String(50), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

# The server processes sharing this database, as last heard from (``belfry cluster``).
nodes = Table(
    "nodes",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("version", String(50), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("last_seen", UtcDateTime, nullable=False),
    # Seconds to add to the node's clock to read the database's (None: not measured yet).
    Column("clock_offset", Float, nullable=True),
)

# Alert channels. The spec holds credentials: stored sealed with the server's secret key,
# with a digest to tell an unchanged re-apply and a redacted copy to show.
channels = Table(
    "channels",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("sealed", Text, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("redacted", Text, nullable=False),  # JSON
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# Settings of a group of jobs (``groups:`` in job files): its alert rules.
group_settings = Table(
    "group_settings",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("spec", Text, nullable=False),  # GroupSpec as JSON
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# One alert to one channel, from decision to sent or given up (``core.deliveries``).
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("channel", String(100), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("job", String(201), nullable=False),
    Column("run_id", BigInteger, nullable=True),  # no foreign key: outlives pruned runs
    Column("dedup_key", String(400), nullable=False, unique=True),
    Column("alert", Text, nullable=False),  # JSON
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("lease_until", UtcDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime, nullable=True),
    Index(None, "state", "next_attempt_at"),
    Index(None, "run_id"),
    Index(None, "channel", "id"),
    # Realert: when did this job last alert this kind to this channel.
    Index(None, "job", "kind", "channel", "created_at"),
    sqlite_autoincrement=True,
)

# Marks the notifier keeps across failovers: how far it has read the runs that ended.
notifier_marks = Table(
    "notifier_marks",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("at", UtcDateTime, nullable=False),
)

# Maintenance windows in force: one per scope, '*' (everything) or a group's name.
maintenance = Table(
    "maintenance",
    metadata,
    Column("scope", String(100), primary_key=True),
    Column("note", Text),
    Column("started_at", UtcDateTime, nullable=False),
    Column("started_by", String(200), nullable=False),
)
