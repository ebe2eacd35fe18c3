"""``belfry server`` and ``belfry token``: commands run on a server host."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from belfry.cli.errors import EXIT_BAD_INPUT, CliError
from belfry.cli.options import Output, Server, Token, connect
from belfry.cli.rendering import OutputFormat, print_json, print_table, short_time
from belfry.server.defaults import (
    DEFAULT_LISTEN,
    DEFAULT_MAX_REQUEST_BYTES,
    MIN_MAX_REQUEST_BYTES,
    default_state_dir,
)
from belfry.worker.log_format import LogFormat

if TYPE_CHECKING:
    from belfry.services.sso import OidcSettings

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
    "log_format",
    "metrics_public",
    "tls_cert",
    "tls_key",
    "forwarded_allow_ips",
    "max_request_bytes",
    "secret_key_file",
    "oidc",
    "smtp",
    "alerts",
}


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(f"--listen: expected HOST:PORT, got {value!r}", EXIT_BAD_INPUT)
    return host.strip("[]") or "127.0.0.1", int(port)


def _tls_files(
    cert: Path | None, key: Path | None, cert_label: str, key_label: str
) -> tuple[Path | None, Path | None]:
    """The certificate and key, checked now so that a mistake is one line naming the option
    rather than a traceback from uvicorn after the node has opened."""
    if cert is None and key is None:
        return None, None
    if cert is None or key is None:
        missing, given = (cert_label, key_label) if cert is None else (key_label, cert_label)
        raise CliError(f"{missing}: required with {given} (give both or neither)", EXIT_BAD_INPUT)
    for label, path in ((cert_label, cert), (key_label, key)):
        try:
            path.read_bytes()
        except OSError as error:
            raise CliError(
                f"{label}: cannot read {path}: {error.strerror}", EXIT_BAD_INPUT
            ) from None
    try:
        # An encrypted key gets an empty password instead of a prompt on the terminal.
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            cert, key, password=lambda: b""
        )
    except ssl.SSLError as error:
        raise CliError(
            f"{cert_label}/{key_label}: cannot use {cert} with {key}: {_words(error)} "
            "(PEM files, the key unencrypted and matching the certificate)",
            EXIT_BAD_INPUT,
        ) from None
    return cert, key


def _path_setting(
    option: Path | None, flag: str, values: dict[str, Any], key: str, config: Path | None
) -> tuple[Path | None, str]:
    """A file from the command line, else from the config file, with the label to name it by."""
    if option is not None:
        return option, flag
    value = values.get(key)
    if value is None:
        return None, flag if config is None else f"{config}: {key}"
    if not isinstance(value, str) or not value:
        raise CliError(f"{config}: {key}: expected a file path, got {value!r}", EXIT_BAD_INPUT)
    return Path(value), f"{config}: {key}"


def _forwarded_allow_ips(
    option: str | None, values: dict[str, Any], config: Path | None
) -> tuple[str, ...]:
    """The proxies to believe, from the option (comma-separated) or the config (a list or a
    comma-separated string). Each must be an IP address or network: uvicorn would take
    anything else as a name no client ever has, and trust nobody without a word."""
    label = "--forwarded-allow-ips"
    value: Any = option
    if option is None:
        label, value = f"{config}: forwarded_allow_ips", values.get("forwarded_allow_ips")
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise CliError(
            f"{label}: expected addresses or networks, e.g. 10.0.0.5,10.1.0.0/16, got {value!r}",
            EXIT_BAD_INPUT,
        )
    proxies = []
    for item in (item.strip() for item in items):
        if not item:
            continue
        try:
            proxies.append(str(ipaddress.ip_network(item)))
        except ValueError:
            raise CliError(
                f"{label}: {item!r} is not an IP address or network (e.g. 10.1.0.0/16)",
                EXIT_BAD_INPUT,
            ) from None
    return tuple(proxies)


def _max_request_bytes(value: Any, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < MIN_MAX_REQUEST_BYTES:
        raise CliError(
            f"{label}: expected a number of bytes of at least {MIN_MAX_REQUEST_BYTES} "
            f"(2 MiB, a worker's largest report), got {value!r}",
            EXIT_BAD_INPUT,
        )
    return value


def _log_format(option: LogFormat | None, values: dict[str, Any], config: Path | None) -> LogFormat:
    if option is not None:
        return option
    value = values.get("log_format", LogFormat.TEXT.value)
    try:
        return LogFormat(value)
    except ValueError:
        raise CliError(
            f"{config}: log_format: expected text or json, got {value!r}", EXIT_BAD_INPUT
        ) from None


def _flag(values: dict[str, Any], key: str, config: Path | None) -> bool:
    value = values.get(key, False)
    if not isinstance(value, bool):
        raise CliError(f"{config}: {key}: expected true or false, got {value!r}", EXIT_BAD_INPUT)
    return value


def _oidc(value: Any, config: Path | None) -> OidcSettings | None:
    """The ``oidc:`` section checked (None without one)."""
    from belfry.services.sso import parse_oidc_settings

    if value is None:
        return None
    try:
        return parse_oidc_settings(value)
    except ValueError as error:
        raise CliError(f"{config}: oidc: {error}", EXIT_BAD_INPUT) from None


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


def _words(error: ssl.SSLError) -> str:
    """OpenSSL's reason (KEY_VALUES_MISMATCH) as words."""
    return str(error.reason or error).replace("_", " ").lower()


def register(app: typer.Typer) -> None:
    token_app = typer.Typer(help="Create, list and revoke API tokens.", no_args_is_help=True)
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
        tls_cert: Annotated[
            Path | None,
            typer.Option(help="Serve HTTPS: the certificate chain (PEM); needs --tls-key."),
        ] = None,
        tls_key: Annotated[
            Path | None, typer.Option(help="The private key (PEM, unencrypted) of --tls-cert.")
        ] = None,
        forwarded_allow_ips: Annotated[
            str | None,
            typer.Option(
                help="Reverse proxies (addresses or networks, comma-separated) whose "
                "X-Forwarded-Proto/-For are believed [default: none]"
            ),
        ] = None,
        secret_key_file: Annotated[
            Path | None,
            typer.Option(
                help="The key sealing jobs' secret env values; the same file for every "
                "server sharing a database [default: secret.key in the state directory, "
                "created at the first start]"
            ),
        ] = None,
        log_format: Annotated[
            LogFormat | None,
            typer.Option(
                help="Log lines as text, or as one JSON object per line [default: text]",
                case_sensitive=False,
            ),
        ] = None,
    ) -> None:
        """Run a Belfry server (API, scheduler and, unless --no-worker, a worker)."""
        from belfry.server.main import serve  # imported here: the client commands stay light

        values = _config(config)
        host, port = _listen(listen or values.get("listen") or DEFAULT_LISTEN)
        retention = values.get("retention") or {}
        # Each option overrides its key in the config file; errors name where the value came from.
        cert, cert_label = _path_setting(tls_cert, "--tls-cert", values, "tls_cert", config)
        key, key_label = _path_setting(tls_key, "--tls-key", values, "tls_key", config)
        cert, key = _tls_files(cert, key, cert_label, key_label)
        secret_file, _ = _path_setting(
            secret_key_file, "--secret-key-file", values, "secret_key_file", config
        )
        max_request_bytes = _max_request_bytes(
            values.get("max_request_bytes", DEFAULT_MAX_REQUEST_BYTES),
            f"{config}: max_request_bytes",
        )
        proxies = _forwarded_allow_ips(forwarded_allow_ips, values, config)
        # What only a server needs is imported here: every other command starts faster.
        from belfry.cli.alert_config import notifier_settings, smtp_settings
        from belfry.server.settings import Settings
        from belfry.services.retention import RetentionDefaults

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
            log_format=_log_format(log_format, values, config),
            metrics_public=_flag(values, "metrics_public", config),
            tls_cert=cert,
            tls_key=key,
            forwarded_allow_ips=proxies,
            max_request_bytes=max_request_bytes,
            secret_key_file=secret_file,
            oidc=_oidc(values.get("oidc"), config),
            smtp=smtp_settings(values.get("smtp"), config),
            notifier=notifier_settings(values.get("alerts"), config),
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
        db: Annotated[
            str | None,
            typer.Option(
                help="The server's database URL: make the token there (bootstrap on a "
                "server host). Without it the server makes it (--server/--token)."
            ),
        ] = None,
        role: Annotated[
            str | None,
            typer.Option(
                help="user (acts as you; the default through the server), admin (the "
                "default with --db) or worker"
            ),
        ] = None,
        pool: Annotated[
            list[str] | None, typer.Option(help="Pools a worker token may claim from.")
        ] = None,
        name: Annotated[str, typer.Option(help="A label for the token.")] = "cli",
        expires_in_days: Annotated[
            float | None,
            typer.Option("--expires-in-days", min=0.0001, help="Refused after this many days."),
        ] = None,
        server: Server = None,
        token: Token = None,
        output: Annotated[OutputFormat, typer.Option("--output", "-o")] = OutputFormat.TABLE,
    ) -> None:
        """Create a token; its secret is shown this once."""
        role = role or ("admin" if db else "user")
        if role not in {"admin", "worker", "user"}:
            raise CliError(f"--role: must be user, admin or worker, got {role!r}", EXIT_BAD_INPUT)
        if role == "worker" and not pool:
            raise CliError("--pool: a worker token needs at least one pool", EXIT_BAD_INPUT)
        if db is None:
            made = connect(server, token).post(
                "/api/v1/tokens",
                {
                    "name": name,
                    "role": role,
                    "pools": pool or [],
                    "expires_in_days": expires_in_days,
                },
            )
            secret, shown = made["token"], made
        else:
            if role == "user":
                raise CliError("--role: a user token is made through the server", EXIT_BAD_INPUT)
            _check_db_url(db)
            secret, record = asyncio.run(_create_token(db, name, role, pool or [], expires_in_days))
            shown = {
                "token": secret,
                "id": record.id,
                "name": record.name,
                "role": record.role,
                "pools": record.pools,
            }
        if output is OutputFormat.JSON:
            print_json(shown)
        else:
            print_table(
                ["token", "id", "role", "pools"],
                [[secret, shown["id"], shown["role"], ",".join(shown["pools"])]],
            )

    @token_app.command("list")
    def token_list(
        server: Server = None, token: Token = None, output: Output = OutputFormat.TABLE
    ) -> None:
        """Your tokens (every token for a global admin); never their secrets."""
        data = connect(server, token).get("/api/v1/tokens")
        if output is OutputFormat.JSON:
            print_json(data)
            return
        print_table(
            ["id", "name", "role", "user", "pools", "created", "expires", "revoked"],
            [
                [
                    t["id"],
                    t["name"],
                    t["role"],
                    t["user"] or "-",
                    ",".join(t["pools"]) or "-",
                    short_time(t["created_at"]),
                    short_time(t["expires_at"]),
                    short_time(t["revoked_at"]),
                ]
                for t in data
            ],
        )

    @token_app.command("revoke")
    def token_revoke(
        token_id: Annotated[int, typer.Argument(metavar="ID")],
        server: Server = None,
        token: Token = None,
    ) -> None:
        """Revoke a token: refused from now on."""
        connect(server, token).delete(f"/api/v1/tokens/{token_id}")
        print(f"revoked token {token_id}")


def _check_db_url(url: str) -> None:
    if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise CliError(
            f"--db: unsupported database URL {url!r} "
            "(use sqlite:///path.db or postgresql://user@host:port/dbname)",
            EXIT_BAD_INPUT,
        )


async def _create_token(
    db: str, name: str, role: str, pools: list[str], expires_in_days: float | None
) -> Any:
    from datetime import UTC, datetime, timedelta

    from belfry.adapters.clock import SystemClock
    from belfry.adapters.store import open_store
    from belfry.core.records import SERVER_ACTOR
    from belfry.services.accounts import AccountError
    from belfry.services.audit import AuditLog
    from belfry.services.tokens import TokenService

    try:
        store = await open_store(db)
    except RuntimeError as error:
        raise CliError(str(error)) from None
    try:
        expires = None
        if expires_in_days is not None:
            expires = datetime.now(UTC) + timedelta(days=expires_in_days)
        clock = SystemClock()
        secret, record = await TokenService(store, clock).create(
            name, role, pools, expires_at=expires
        )
        # Made past the API, by whoever can reach the database: the audit log must still
        # show that an admin or worker token appeared.
        await AuditLog(store, clock).token_created(
            SERVER_ACTOR, record, via="belfry token create --db"
        )
        return secret, record
    except AccountError as error:
        raise CliError(str(error), EXIT_BAD_INPUT) from None
    finally:
        await store.close()
