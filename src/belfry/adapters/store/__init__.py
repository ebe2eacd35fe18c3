"""The SQL store: the Store port on SQLite (one node) or PostgreSQL (HA)."""

from belfry.adapters.store.errors import StoreUnavailable
from belfry.adapters.store.factory import database_kind, open_store
from belfry.adapters.store.sql import SqlStore

__all__ = ["SqlStore", "StoreUnavailable", "database_kind", "open_store"]
