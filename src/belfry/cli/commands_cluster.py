"""``belfry cluster``: the server nodes and the workers, with their pools, tags and load."""

from __future__ import annotations

from typing import Any

import typer

from belfry.cli.options import Output, Server, Token, connect
from belfry.cli.rendering import OutputFormat, print_json, print_table, short_time

__all__ = ["register"]


def _number(value: float | None) -> str:
    """``2``, ``0.5``, or ``-`` (no limit)."""
    return "-" if value is None else f"{value:g}"


def _memory(megabytes: int | None) -> str:
    if megabytes is None:
        return "-"
    if megabytes >= 1024 and megabytes % 1024 == 0:
        return f"{megabytes // 1024}Gi"
    return f"{megabytes}Mi"


def _capacity(worker: dict[str, Any]) -> str:
    """``slots/cpu/memory`` as declared, ``-`` where there is no limit: ``4/2/512Mi``."""
    return "/".join(
        [_number(worker["slots"]), _number(worker["cpu"]), _memory(worker["memory_mb"])]
    )


def _tags(tags: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(tags.items()))


def register(app: typer.Typer) -> None:
    @app.command()
    def cluster(
        server: Server = None, token: Token = None, output: Output = OutputFormat.TABLE
    ) -> None:
        """Server nodes (leader) and workers: pools, tags, capacity, state and load."""
        data = connect(server, token).get("/api/v1/cluster")
        if output is OutputFormat.JSON:
            print_json(data)
            return
        print_table(
            ["node", "version", "leader", "epoch", "lease until", "last seen", "clock"],
            [
                [
                    node["name"],
                    node["version"],
                    "yes" if node["leader"] else "no",
                    "-" if node.get("epoch") is None else node["epoch"],
                    short_time(node.get("lease_expires")),
                    short_time(node.get("last_seen")),
                    _clock(node),
                ]
                for node in data["nodes"]
            ],
        )
        health = data.get("health")
        if health is not None:
            print(_health(health))
        print()
        if not data["workers"]:
            print("no workers have said hello yet")
            return
        print_table(
            [
                "worker",
                "host",
                "pools",
                "tags",
                "slots/cpu/mem",
                "state",
                "running",
                "last seen",
            ],
            [
                [
                    worker["name"],
                    worker["host"],
                    ",".join(worker["pools"]),
                    _tags(worker["tags"]),
                    _capacity(worker),
                    worker["state"],
                    worker["running"],
                    short_time(worker["last_seen"]),
                ]
                for worker in data["workers"]
            ],
        )


def _health(health: dict[str, Any]) -> str:
    """The answering server's readiness, as ``/readyz`` has it, on one line."""
    facts = ("database", "migrations", "clock")
    if health["status"] == "ok":
        return f"{health['node']} (answering): ready ({', '.join(f'{f} ok' for f in facts)})"
    wrong = "; ".join(f"{fact}: {health[fact]}" for fact in facts if health[fact] != "ok")
    return f"{health['node']} (answering): NOT READY: {wrong}"


def _clock(node: dict[str, Any]) -> str:
    """The node's clock against the database's, and whether that keeps it from leading."""
    offset = node.get("clock_offset")
    if offset is None:
        return "-"
    shown = f"{offset:+.3f}s"
    return f"{shown} (off: will not lead)" if node.get("refuses_leadership") else shown
