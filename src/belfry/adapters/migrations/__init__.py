"""Alembic migrations for the SQL store, run to head by ``open_store``."""
