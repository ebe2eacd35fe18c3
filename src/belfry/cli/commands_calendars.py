"""Calendar commands: list, show and delete the calendars jobs exclude or run only in.

Calendars are created and changed with ``belfry apply`` (a ``calendars:`` section) or the
API's ``PUT /api/v1/calendars/NAME``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from belfry.cli.options import Output, Server, Token, connect
from belfry.cli.rendering import OutputFormat, print_json, print_table

__all__ = ["register"]

CalendarArg = Annotated[str, typer.Argument(metavar="NAME")]


def _rules(spec: dict[str, Any]) -> str:
    """``3 dates, 1 range, 2 weekly windows, include: a, exclude: b``."""
    parts = []
    for key, word in (("dates", "date"), ("ranges", "range"), ("weekly", "weekly window")):
        count = len(spec.get(key, []))
        if count:
            parts.append(f"{count} {word}{'s' if count != 1 else ''}")
    for key in ("include", "exclude"):
        if spec.get(key):
            parts.append(f"{key}: {', '.join(spec[key])}")
    return ", ".join(parts)


def register(app: typer.Typer) -> None:
    @app.command()
    def calendars(
        server: Server = None, token: Token = None, output: Output = OutputFormat.TABLE
    ) -> None:
        """List calendars: name, zone, rules."""
        data = connect(server, token).get("/api/v1/calendars")
        if output is OutputFormat.JSON:
            print_json(data)
            return
        print_table(
            ["calendar", "tz", "rules", "description"],
            [
                [
                    item["name"],
                    item["spec"].get("timezone", "UTC"),
                    _rules(item["spec"]),
                    item["spec"].get("description", ""),
                ]
                for item in data
            ],
        )

    calendar = typer.Typer(help="Show or delete one calendar.", no_args_is_help=True)
    app.add_typer(calendar, name="calendar")

    @calendar.command("show")
    def show(
        name: CalendarArg,
        server: Server = None,
        token: Token = None,
        output: Output = OutputFormat.TABLE,
    ) -> None:
        """A calendar's definition."""
        data = connect(server, token).get(f"/api/v1/calendars/{name}")
        if output is OutputFormat.JSON:
            print_json(data)
            return
        for key, value in data["spec"].items():
            print(f"{key}: {value}")

    @calendar.command("delete")
    def delete(name: CalendarArg, server: Server = None, token: Token = None) -> None:
        """Delete a calendar that no job or calendar names."""
        connect(server, token).delete(f"/api/v1/calendars/{name}")
        print(f"deleted calendar {name}")
