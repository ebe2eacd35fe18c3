"""Server settings, built once at the entry point and passed down."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from belfry.services.retention import RetentionDefaults

__all__ = ["DEFAULT_LISTEN", "DEFAULT_PORT", "Settings", "default_state_dir"]

# Not used by common services (PostgreSQL 5432, MySQL 3306, Redis 6379, RabbitMQ 5672,
# HTTP alternates 8000/8080/8888).
DEFAULT_PORT = 7711
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"


def default_state_dir() -> Path:
    """Where a single-node server keeps its SQLite file and first admin token:
    ``$BELFRY_HOME``, else ``$XDG_DATA_HOME/belfry``, else ``~/.local/share/belfry``."""
    if home := os.environ.get("BELFRY_HOME"):
        return Path(home)
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "belfry"


@dataclass(frozen=True)
class Settings:
    state_dir: Path = field(default_factory=default_state_dir)
    db_url: str | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    embedded_worker: bool = True
    worker_slots: int | None = None
    # The pools the embedded worker serves (jobs of other pools wait for remote workers).
    worker_pools: tuple[str, ...] = ("default",)
    retention: RetentionDefaults = field(default_factory=RetentionDefaults)
    prune_interval: float = 60.0
    log_level: str = "info"

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.state_dir / 'belfry.db'}"

    @property
    def admin_token_file(self) -> Path:
        return self.state_dir / "admin-token"

    @property
    def public_url(self) -> str:
        host = "127.0.0.1" if self.host in {"0.0.0.0", "::", ""} else self.host
        return f"http://{host}:{self.port}"
