"""Running ``belfry server``: open the node, serve the API, stop cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import FrameType

import uvicorn

from belfry import __version__
from belfry.server.api import create_app
from belfry.server.node import Node
from belfry.server.settings import Settings
from belfry.worker.child_watcher import use_pidfd_child_watcher
from belfry.worker.log_format import configure_logging

__all__ = ["serve"]


class _Server(uvicorn.Server):
    """Uvicorn, telling the node when a stop begins: a graceful shutdown waits for open
    requests, and workers' long polls would otherwise hold it for their whole wait."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        asyncio.get_running_loop().call_soon_threadsafe(self._on_exit)
        super().handle_exit(sig, frame)


async def serve(settings: Settings, announce: Callable[[str], None] = print) -> None:
    configure_logging(settings.log_format, settings.log_level)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    use_pidfd_child_watcher()
    node = await Node.open(settings)
    app = create_app(node)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        # Uvicorn's own lines (its errors) go through the root logger, so they take
        # --log-format like every other line; the access log stays off.
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        # Checked by the CLI before the node opens (both or neither, readable, a pair).
        ssl_certfile=settings.tls_cert,
        ssl_keyfile=settings.tls_key,
        # Uvicorn would believe X-Forwarded-* from 127.0.0.1 (or $FORWARDED_ALLOW_IPS):
        # here only from the proxies the settings name, and from nobody by default.
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=list(settings.forwarded_allow_ips),
    )
    server = _Server(config, node.begin_shutdown)
    announce(f"Belfry {__version__} serving at {settings.public_url}")
    announce(f"  database: {_safe(settings.database_url)}")
    announce(f"  worker:   {'embedded' if settings.embedded_worker else 'none (--no-worker)'}")
    if node.first_admin_token:
        announce(f"  first admin token (shown once; also in {settings.admin_token_file}):")
        announce(f"    {node.first_admin_token}")
    if node.first_admin_password:
        password_file = settings.admin_token_file.with_name("admin-password")
        announce(f"  first login: admin / {node.first_admin_password}")
        announce(f"    (shown once; also in {password_file})")
    await server.serve()
    if not server.started:
        await node.close()
        raise OSError(f"could not listen on {settings.host}:{settings.port} (is it in use?)")


def _safe(url: str) -> str:
    """A URL with any password hidden."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest and ":" in rest.split("@", 1)[0]:
        user = rest.split("@", 1)[0].split(":", 1)[0]
        rest = f"{user}:***@{rest.split('@', 1)[1]}"
    return scheme + sep + rest
