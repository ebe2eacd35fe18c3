"""Alert commands: the channels alerts go to, and the log of what was delivered.

Channels are created and changed with ``belfry apply`` (a ``channels:`` section); their
credentials are never shown back.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from belfry.cli.options import Output, Server, Token, connect
from belfry.cli.rendering import OutputFormat, print_json, print_table

__all__ = ["register"]

ChannelArg = Annotated[str, typer.Argument(metavar="NAME")]


def _target(item: dict[str, Any]) -> str:
    spec = item["spec"]
    if item["kind"] == "webhook":
        return str(spec["webhook"]["url"])
    if item["kind"] == "email":
        return ", ".join(spec["email"]["to"])
    return str(spec["apprise"])


def _delivery_rows(data: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            item["id"],
            item["created_at"],
            item["channel"],
            item["kind"],
            item["run_id"] or "",
            item["state"],
            item["attempts"],
            item["title"]
            if item["state"] != "failed"
            else f"{item['title']} ({item['last_error']})",
        ]
        for item in data
    ]


def register(app: typer.Typer) -> None:
    @app.command()
    def channels(
        server: Server = None, token: Token = None, output: Output = OutputFormat.TABLE
    ) -> None:
        """List alert channels: name, kind, target (without credentials)."""
        data = connect(server, token).get("/api/v1/channels")
        if output is OutputFormat.JSON:
            print_json(data)
            return
        print_table(
            ["channel", "kind", "target", "description"],
            [
                [item["name"], item["kind"], _target(item), item["spec"].get("description", "")]
                for item in data
            ],
        )

    channel = typer.Typer(help="Show, test or delete one alert channel.", no_args_is_help=True)
    app.add_typer(channel, name="channel")

    @channel.command("show")
    def show(
        name: ChannelArg,
        server: Server = None,
        token: Token = None,
        output: Output = OutputFormat.TABLE,
    ) -> None:
        """A channel's definition (credentials as ***) and its latest deliveries."""
        client = connect(server, token)
        data = client.get(f"/api/v1/channels/{name}")
        if output is OutputFormat.JSON:
            print_json(data)
            return
        for key, value in data["spec"].items():
            print(f"{key}: {value}")
        recent = client.get("/api/v1/deliveries", channel=name, limit=10)
        if recent:
            print()
            print_table(
                ["id", "at", "channel", "kind", "run", "state", "attempts", "alert"],
                _delivery_rows(recent),
            )

    @channel.command("test")
    def test(name: ChannelArg, server: Server = None, token: Token = None) -> None:
        """Send a test alert through the channel now; exit 1 if it was not delivered."""
        delivery = connect(server, token).post(f"/api/v1/channels/{name}/test", {})
        if delivery["state"] == "sent":
            print(f"sent a test alert to {name}")
            return
        print(f"test alert to {name}: {delivery['state']}: {delivery['last_error']}")
        raise typer.Exit(1)

    @channel.command("delete")
    def delete(name: ChannelArg, server: Server = None, token: Token = None) -> None:
        """Delete a channel that no job or group alerts through."""
        connect(server, token).delete(f"/api/v1/channels/{name}")
        print(f"deleted channel {name}")

    @app.command()
    def deliveries(
        channel: Annotated[str | None, typer.Option(help="Only to this channel.")] = None,
        run: Annotated[int | None, typer.Option(help="Only about this run.")] = None,
        job: Annotated[str | None, typer.Option(help="Only about this job (GROUP/NAME).")] = None,
        limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
        server: Server = None,
        token: Token = None,
        output: Output = OutputFormat.TABLE,
    ) -> None:
        """Alerts sent, waiting or given up, newest first."""
        data = connect(server, token).get(
            "/api/v1/deliveries", channel=channel, run=run, job=job, limit=limit
        )
        if output is OutputFormat.JSON:
            print_json(data)
            return
        print_table(
            ["id", "at", "channel", "kind", "run", "state", "attempts", "alert"],
            _delivery_rows(data),
        )
