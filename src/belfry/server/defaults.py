"""Where a server listens and keeps its state unless told otherwise.

Apart from ``settings`` so that the CLI's client reads them without importing what a
server needs (every CLI call would pay for it).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "DEFAULT_LISTEN",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_PORT",
    "MIN_MAX_REQUEST_BYTES",
    "default_state_dir",
]

# Not used by common services (PostgreSQL 5432, MySQL 3306, Redis 6379, RabbitMQ 5672,
# HTTP alternates 8000/8080/8888).
DEFAULT_PORT = 7711
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"

# Far above any real request (an apply of thousands of jobs, a worker's report batch), far
# below what would hurt a server that must hold a request's JSON in memory to parse it.
DEFAULT_MAX_REQUEST_BYTES = 10 * 1024 * 1024
# A worker's largest single report must pass: one output chunk (up to the 256 KiB tail a
# run's output keeps), JSON-escaped up to six bytes per character.
MIN_MAX_REQUEST_BYTES = 2 * 1024 * 1024


def default_state_dir() -> Path:
    """Where a single-node server keeps its SQLite file and first admin token:
    ``$BELFRY_HOME``, else ``$XDG_DATA_HOME/belfry``, else ``~/.local/share/belfry``."""
    if home := os.environ.get("BELFRY_HOME"):
        return Path(home)
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "belfry"
