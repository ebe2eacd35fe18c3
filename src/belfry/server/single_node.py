"""SQLite is single-node: a second server on the same file must refuse to start."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["SecondServer", "hold_sqlite_lock"]


class SecondServer(RuntimeError):
    pass


def hold_sqlite_lock(database_file: Path) -> int:
    """Take an exclusive lock beside the SQLite file for the life of the process; return
    the descriptor. Raises SecondServer if another server holds it."""
    lock_path = database_file.with_name(database_file.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise SecondServer(
            f"another belfry server is already using {database_file}; SQLite is single-node "
            "(for several servers, use PostgreSQL: --db postgresql://...)"
        ) from None
    return descriptor
