"""``belfry worker``: the agent for app hosts (INTERFACE.md "Processes")."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from pathlib import Path
from typing import Annotated

import typer

from belfry.cli.errors import EXIT_BAD_INPUT, CliError
from belfry.core.names import is_valid_name
from belfry.core.sizes import parse_memory_mb
from belfry.worker.log_format import LogFormat, configure_logging

__all__ = ["register"]


def _tags(values: list[str]) -> dict[str, str]:
    tags = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise CliError(f"--tag: expected KEY=VALUE, got {value!r}", EXIT_BAD_INPUT)
        tags[key] = text
    return tags


def _words(error: ssl.SSLError) -> str:
    """OpenSSL's reason (NO_CERTIFICATE_OR_CRL_FOUND) as words."""
    return str(error.reason or error).replace("_", " ").lower()


def register(app: typer.Typer) -> None:
    @app.command()
    def worker(
        server: Annotated[
            str | None,
            typer.Option(
                help="Server URL, or several separated by commas (failover) [env BELFRY_SERVER]"
            ),
        ] = None,
        token: Annotated[
            str | None, typer.Option(help="A worker token [env BELFRY_TOKEN].")
        ] = None,
        pool: Annotated[
            list[str] | None, typer.Option(help="A pool to serve (repeat for several).")
        ] = None,
        tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE (repeatable).")] = None,
        slots: Annotated[
            int | None, typer.Option(min=1, help="Runs at once [default: no limit].")
        ] = None,
        cpu: Annotated[
            float | None, typer.Option(min=0, help="CPU units runs may declare in all.")
        ] = None,
        memory: Annotated[
            str | None, typer.Option(help="Memory runs may declare in all, e.g. 4Gi.")
        ] = None,
        name: Annotated[
            str | None,
            typer.Option(
                help="A stable, unique name (a restart then hands back its lost runs at "
                "once) [default: HOST:PID]"
            ),
        ] = None,
        drain_grace: Annotated[
            float, typer.Option(min=0, help="On SIGTERM, seconds runs may go on.")
        ] = 60.0,
        ca: Annotated[
            Path | None,
            typer.Option(
                help="CA bundle (PEM) to verify https servers' certificates with "
                "[default: the system's trust store]"
            ),
        ] = None,
        log_format: Annotated[
            LogFormat,
            typer.Option(
                help="Log lines as text, or as one JSON object per line.", case_sensitive=False
            ),
        ] = LogFormat.TEXT,
    ) -> None:
        """Run jobs of the given pools on this host, for the servers at --server."""
        from belfry.worker.http_link import FatalWorkerError, tls_context
        from belfry.worker.main import WorkerConfig, run_worker

        servers = [
            url.strip()
            for url in (server or os.environ.get("BELFRY_SERVER") or "").split(",")
            if url.strip()
        ]
        if not servers:
            raise CliError("--server: give the server URL(s) (or BELFRY_SERVER)", EXIT_BAD_INPUT)
        secret = token or os.environ.get("BELFRY_TOKEN")
        if not secret:
            raise CliError("--token: give a worker token (or BELFRY_TOKEN)", EXIT_BAD_INPUT)
        pools = pool or ["default"]
        for item in pools:
            if not is_valid_name(item):
                raise CliError(f"--pool: not a pool name: {item!r}", EXIT_BAD_INPUT)
        try:
            memory_mb = parse_memory_mb(memory) if memory is not None else None
        except ValueError as error:
            raise CliError(f"--memory: {error}", EXIT_BAD_INPUT) from None
        try:
            tls = tls_context(ca)
        except OSError as error:
            raise CliError(f"--ca: cannot read {ca}: {error.strerror}", EXIT_BAD_INPUT) from None
        except ssl.SSLError as error:
            raise CliError(
                f"--ca: {ca}: not a PEM bundle of CA certificates ({_words(error)})",
                EXIT_BAD_INPUT,
            ) from None
        config = WorkerConfig(
            servers=servers,
            token=secret,
            pools=pools,
            tags=_tags(tag or []),
            slots=slots,
            cpu=cpu,
            memory_mb=memory_mb,
            name=name,
            drain_grace=drain_grace,
            tls=tls,
        )
        configure_logging(log_format, logging.INFO)
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
        try:
            asyncio.run(run_worker(config))
        except FatalWorkerError as error:
            raise CliError(str(error)) from None
