"""Options shared by the client commands."""

from __future__ import annotations

from typing import Annotated

import typer

from belfry.cli.client import ApiClient, resolve_server, resolve_token
from belfry.cli.rendering import OutputFormat

__all__ = ["Output", "PageSize", "Server", "Token", "connect"]

Server = Annotated[
    str | None,
    typer.Option("--server", help="API URL [env: BELFRY_SERVER; default http://127.0.0.1:7711]"),
]
Token = Annotated[str | None, typer.Option("--token", help="API token [env: BELFRY_TOKEN]")]
# Items per request of a paged list (the server's default if not given); hidden, for tests
# that need more items than a page without making hundreds.
PageSize = Annotated[
    int | None, typer.Option("--page-size", min=1, max=1000, hidden=True, help="Items per request.")
]
Output = Annotated[
    OutputFormat, typer.Option("--output", "-o", help="table for people, json for scripts")
]


def connect(server: str | None, token: str | None, timeout: float = 30.0) -> ApiClient:
    return ApiClient(resolve_server(server), resolve_token(token), timeout=timeout)
