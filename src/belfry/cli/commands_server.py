"""``belfry server`` and ``belfry token``: commands run on a server host."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from belfry.cli.errors import EXIT_BAD_INPUT, CliError
from belfry.cli.rendering import OutputFormat, print_json, print_table
from belfry.server.settings import DEFAULT_LISTEN, Settings, default_state_dir
from belfry.services.retention import RetentionDefaults

__all__ = ["register"]

_CONFIG_KEYS = {
    "db",
    "listen",
    "worker",
    "worker_slots",
    "worker_pools",
    "retention",
    "prune_interval",
    "state_dir",
    "log_level",
}


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(f"--listen: expected HOST:PORT, got {value!r}", EXIT_BAD_INPUT)
    return host.strip("[]") or "127.0.0.1", int(port)


def _config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = YAML(typ="safe").load(path.read_text())
    except OSError as error:
        raise CliError(f"--config: cannot read {path}: {error.strerror}", EXIT_BAD_INPUT) from None
    except YAMLError as error:
        raise CliError(f"{path}: invalid YAML: {error}", EXIT_BAD_INPUT) from None
    data = data or {}
    if not isinstance(data, dict):
        raise CliError(f"{path}: expected a mapping of settings", EXIT_BAD_INPUT)
    unknown = sorted(set(data) - _CONFIG_KEYS)
    if unknown:
        raise CliError(
            f"{path}: {unknown[0]}: unknown setting (known: {', '.join(sorted(_CONFIG_KEYS))})",
            EXIT_BAD_INPUT,
        )
    return data


def register(app: typer.Typer) -> None:
    token_app = typer.Typer(help="Create API and worker tokens.", no_args_is_help=True)
    app.add_typer(token_app, name="token")

    @app.command()
    def server(
        db: Annotated[
            str | None,
            typer.Option(
                help="sqlite:///path.db or postgresql://user@host/db "
                "[default: sqlite in $BELFRY_HOME or ~/.local/share/belfry]"
            ),
        ] = None,
        listen: Annotated[
            str | None, typer.Option(help=f"HOST:PORT [default {DEFAULT_LISTEN}]")
        ] = None,
        no_worker: Annotated[bool, typer.Option("--no-worker", help="No embedded worker.")] = False,
        config: Annotated[Path | None, typer.Option(help="YAML settings file.")] = None,
    ) -> None:
        """Run a Belfry server (API, scheduler and, unless --no-worker, a worker)."""
        from belfry.server.main import serve  # imported here: the client commands stay light

        values = _config(config)
        host, port = _listen(listen or values.get("listen") or DEFAULT_LISTEN)
        retention = values.get("retention") or {}
        settings = Settings(
            state_dir=Path(values.get("state_dir") or default_state_dir()),
            db_url=db or values.get("db"),
            host=host,
            port=port,
            embedded_worker=not no_worker and bool(values.get("worker", True)),
            worker_slots=values.get("worker_slots"),
            worker_pools=tuple(values.get("worker_pools") or ("default",)),
            retention=RetentionDefaults(
                keep_runs=retention.get("keep_runs", RetentionDefaults.keep_runs),
                keep_days=retention.get("keep_days", RetentionDefaults.keep_days),
            ),
            prune_interval=float(values.get("prune_interval", 60.0)),
            log_level=str(values.get("log_level", "info")),
        )
        _check_db_url(settings.database_url)
        try:
            asyncio.run(serve(settings))
        except KeyboardInterrupt:
            pass
        except OSError as error:
            raise CliError(str(error)) from None
        except RuntimeError as error:  # SecondServer, StoreUnavailable
            raise CliError(str(error)) from None

    @token_app.command("create")
    def token_create(
        db: Annotated[str, typer.Option(help="The server's database URL.")],
        role: Annotated[str, typer.Option(help="admin | worker")] = "admin",
        pool: Annotated[
            list[str] | None, typer.Option(help="Pools a worker token may claim from.")
        ] = None,
        name: Annotated[str, typer.Option(help="A label for the token.")] = "cli",
        output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.TABLE,
    ) -> None:
        """Create a token, talking to the database directly (bootstrap on a server host)."""
        if role not in {"admin", "worker"}:
            raise CliError(f"--role: must be admin or worker, got {role!r}", EXIT_BAD_INPUT)
        if role == "worker" and not pool:
            raise CliError("--pool: a worker token needs at least one pool", EXIT_BAD_INPUT)
        _check_db_url(db)
        secret, record = asyncio.run(_create_token(db, name, role, pool or []))
        if output is OutputFormat.JSON:
            print_json(
                {
                    "token": secret,
                    "id": record.id,
                    "name": record.name,
                    "role": record.role,
                    "pools": record.pools,
                }
            )
        else:
            print_table(["token", "role", "pools"], [[secret, record.role, ",".join(record.pools)]])


def _check_db_url(url: str) -> None:
    if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise CliError(
            f"--db: unsupported database URL {url!r} "
            "(use sqlite:///path.db or postgresql://user@host:port/dbname)",
            EXIT_BAD_INPUT,
        )


async def _create_token(db: str, name: str, role: str, pools: list[str]) -> Any:
    from belfry.adapters.clock import SystemClock
    from belfry.adapters.store import open_store
    from belfry.services.tokens import TokenService

    try:
        store = await open_store(db)
    except RuntimeError as error:
        raise CliError(str(error)) from None
    try:
        return await TokenService(store, SystemClock()).create(name, role, pools)
    finally:
        await store.close()
