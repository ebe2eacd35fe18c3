"""Alembic environment: migrates the connection ``open_store`` hands over.

Without one, for developers writing a migration with the ``alembic`` command line (a config
whose ``script_location`` is this directory, and ``-x url=sqlite:///dev.db``), it connects
with the synchronous driver itself.

Migration policy (docs/operations.md, "Upgrades"): expand, then contract a release later.
During a rolling upgrade the previous release's servers keep running on the schema the new
release has just migrated, so every migration must be safe for them: add tables, add
columns that are nullable or have a server default, add indexes; never rename or drop in
the release that stops using something, nor make an existing column stricter. Drops and
renames (the contract step) come in a later release, once no server of the release before
reads the old shape, and each one is listed with its reason in
tests/store/test_migration_policy.py, which reads every migration's upgrade() and fails on
any other. Every migration has a working downgrade(). A server refuses to start on a
database at a revision it does not know (one a newer Belfry migrated to).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from belfry.adapters.store.factory import VERSION_TABLE, driver_options, driver_url
from belfry.adapters.store.schema import metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        transaction_per_migration=False,
    )


def _run() -> None:
    connection = context.config.attributes.get("connection")
    if isinstance(connection, Connection):
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise RuntimeError("no database: pass -x url=postgresql://... or sqlite:///...")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, version_table=VERSION_TABLE)
        with context.begin_transaction():
            context.run_migrations()
        return
    # aiosqlite is async only; psycopg (postgresql+psycopg) serves both kinds.
    sync_url, options = driver_options(driver_url(url))
    if sync_url.drivername == "sqlite+aiosqlite":
        sync_url = sync_url.set(drivername="sqlite")
    engine = create_engine(sync_url, poolclass=pool.NullPool, connect_args=options)
    with engine.connect() as own:
        _configure(own)
        with context.begin_transaction():
            context.run_migrations()


_run()
