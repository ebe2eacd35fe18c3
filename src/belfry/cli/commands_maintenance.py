"""``belfry maintenance on|off [--group G] [--note TEXT]``: maintenance windows."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from belfry.cli.errors import EXIT_BAD_INPUT, CliError
from belfry.cli.options import Output, Server, Token, connect
from belfry.cli.rendering import OutputFormat, print_json, print_table, short_time

__all__ = ["register"]


class Switch(StrEnum):
    ON = "on"
    OFF = "off"
    STATUS = "status"


def register(app: typer.Typer) -> None:
    @app.command()
    def maintenance(
        switch: Annotated[
            Switch, typer.Argument(help="on, off, or status (the windows in force).")
        ] = Switch.STATUS,
        group: Annotated[
            str | None, typer.Option(help="Only this group [default: everything].")
        ] = None,
        note: Annotated[str | None, typer.Option(help="Why (shown in skips and the UI).")] = None,
        server: Server = None,
        token: Token = None,
        output: Output = OutputFormat.TABLE,
    ) -> None:
        """Maintenance: the jobs it covers start nothing new (occurrences are skipped,
        reason "maintenance: NOTE"); runs already running finish."""
        if note is not None and switch is not Switch.ON:
            raise CliError("--note: only with 'on'", EXIT_BAD_INPUT)
        client = connect(server, token)
        path = "/api/v1/maintenance" + (f"/{group}" if group else "")
        if switch is Switch.STATUS:
            windows = client.get("/api/v1/maintenance")
            if output is OutputFormat.JSON:
                print_json(windows)
                return
            print_table(
                ["scope", "since", "by", "note"],
                [
                    [
                        "everything" if w["scope"] == "*" else w["scope"],
                        short_time(w["started_at"]),
                        w["started_by"],
                        w["note"] or "-",
                    ]
                    for w in windows
                ],
            )
            return
        scope = f"group {group}" if group else "everything"
        if switch is Switch.ON:
            data = client.put(path, {"note": note})
            if output is OutputFormat.JSON:
                print_json(data)
            else:
                print(f"maintenance on: {scope}{': ' + data['note'] if data['note'] else ''}")
            return
        ended = client.delete(path)
        if output is OutputFormat.JSON:
            print_json(ended)
            return
        deferred = len(ended["deferred_runs"])
        print(f"maintenance off: {scope}" + (f" ({deferred} deferred runs)" if deferred else ""))
