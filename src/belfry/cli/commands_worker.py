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
from belfry.cli.options import Output, Server, Token, connect
from belfry.cli.rendering import OutputFormat, print_json
from belfry.core.names import is_valid_name
from belfry.core.sizes import parse_memory_mb
from belfry.worker.log_format import LogFormat, configure_logging

__all__ = ["register"]


def _set_drain(
    name: str, drain: bool, server: str | None, token: str | None, output: OutputFormat
) -> None:
    action = "drain" if drain else "undrain"
    worker = connect(server, token).post(f"/api/v1/workers/{name}/{action}", {})
    if output is OutputFormat.JSON:
        print_json(worker)
        return
    print(f"worker {worker['name']}: {worker['state']}")


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


WorkerArg = Annotated[
    str, typer.Argument(metavar="NAME", help="The worker, as `belfry cluster` names it.")
]


def register(app: typer.Typer) -> None:
    # `belfry worker [OPTIONS]` runs an agent; `belfry worker drain|undrain NAME` steer one.
    group = typer.Typer(invoke_without_command=True, help="Run a worker agent, or drain one.")
    app.add_typer(group, name="worker")

    @group.command("drain")
    def drain(
        name: WorkerArg,
        server: Server = None,
        token: Token = None,
        output: Output = OutputFormat.TABLE,
    ) -> None:
        """Let the worker finish its runs and take nothing new (global admins)."""
        _set_drain(name, True, server, token, output)

    @group.command("undrain")
    def undrain(
        name: WorkerArg,
        server: Server = None,
        token: Token = None,
        output: Output = OutputFormat.TABLE,
    ) -> None:
        """Let a drained worker take runs again."""
        _set_drain(name, False, server, token, output)

    @group.callback()
    def worker(
        ctx: typer.Context,
        server: Annotated[
            str | None,
            typer.Option(
                help="Server URL, or several separated by commas (failover) (env BELFRY_SERVER)"
            ),
        ] = None,
        token: Annotated[
            str | None, typer.Option(help="A worker token (env BELFRY_TOKEN).")
        ] = None,
        pool: Annotated[
            list[str] | None, typer.Option(help="A pool to serve (repeat for several).")
        ] = None,
        tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE (repeatable).")] = None,
        slots: Annotated[
            int | None, typer.Option(min=1, help="Runs at once (default: no limit).")
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
        if ctx.invoked_subcommand is not None:
            return  # drain / undrain: the options above are the agent's
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
