"""Jobs as code: ``apply`` files to the server, ``diff`` them against it (drift)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from belfry.cli.commands_jobs import Files, load_files
from belfry.cli.errors import EXIT_FAILURE
from belfry.cli.options import Output, Server, Token, connect
from belfry.cli.rendering import OutputFormat, print_json, print_table, short_time

__all__ = ["register"]

Prune = Annotated[
    bool, typer.Option("--prune", help="Delete jobs of these groups absent from the files.")
]


def _body(files: list[Path], *, prune: bool, dry_run: bool, force: bool = False) -> dict[str, Any]:
    loaded = load_files(files)
    return {
        "jobs": [job.model_dump(mode="json") for job in loaded.jobs],
        "calendars": [calendar.model_dump(mode="json") for calendar in loaded.calendars],
        "channels": [channel.model_dump(mode="json") for channel in loaded.channels],
        "groups": [group.model_dump(mode="json") for group in loaded.alert_groups],
        "prune": prune,
        "dry_run": dry_run,
        "force": force,
    }


def _fields_text(fields: dict[str, list[Any]]) -> str:
    return ", ".join(
        f"{field}: {before!r} -> {after!r}" for field, (before, after) in fields.items()
    )


def _change_rows(result: dict[str, Any]) -> list[list[str]]:
    """One row per job, calendar, channel or group the apply changes (or would)."""
    rows = [
        [change["action"], change["job"], _fields_text(change["fields"])]
        for change in result["changes"]
        if change["action"] != "unchanged"
    ]
    for change in result.get("calendar_changes", []):
        if change["action"] != "unchanged":
            rows.append(
                [change["action"], f"calendar {change['calendar']}", _fields_text(change["fields"])]
            )
    for what in ("channel", "group"):
        for change in result.get(f"{what}_changes", []):
            if change["action"] != "unchanged":
                rows.append([change["action"], f"{what} {change['name']}", ""])
    return rows


def _drifted(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The jobs the apply would update or delete although they were changed outside the
    files since their last apply."""
    return [
        change
        for change in result["changes"]
        if change.get("drift") and change["action"] in ("update", "delete")
    ]


def _drift_rows(drifted: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for change in drifted:
        drift = change["drift"]
        by = " ".join(
            part
            for part in (
                f"by {drift['changed_by']}" if drift["changed_by"] else "",
                short_time(drift["changed_at"]) if drift["changed_at"] else "",
            )
            if part
        )
        what = _fields_text(drift["fields"]) or "created outside the files"
        rows.append([change["job"], what, by])
    return rows


def _counts(result: dict[str, Any]) -> dict[str, int]:
    return {
        action: sum(change["action"] == action for change in result["changes"])
        for action in ("create", "update", "delete", "unchanged")
    }


def register(app: typer.Typer) -> None:
    @app.command()
    def apply(
        file: Files,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the diff only.")] = False,
        prune: Prune = False,
        force: Annotated[
            bool,
            typer.Option(
                "--force",
                help="Overwrite jobs changed outside the files (UI, CLI, API) since their "
                "last apply.",
            ),
        ] = False,
        server: Server = None,
        token: Token = None,
        output: Output = OutputFormat.TABLE,
    ) -> None:
        """Create or update jobs from YAML, in one transaction; prints the diff. Jobs
        changed elsewhere since their last apply are not overwritten without --force."""
        body = _body(file, prune=prune, dry_run=dry_run, force=force)
        result = connect(server, token).post("/api/v1/apply", body)
        if output is OutputFormat.JSON:
            print_json(result)
            return
        rows = _change_rows(result)
        if rows:
            print_table(["action", "job", "changes"], rows)
        drifted = _drifted(result)
        if drifted:
            overwritten = "would overwrite" if dry_run else "overwrote"
            print(f"{overwritten} changes made outside the files:")
            print_table(["job", "changed (as applied -> now)", "by"], _drift_rows(drifted))
        counts = _counts(result)
        verb = "would apply" if dry_run else "applied"
        print(
            f"{verb}: {counts['create']} created, {counts['update']} updated, "
            f"{counts['delete']} deleted, {counts['unchanged']} unchanged"
        )
        if dry_run and drifted and not force:
            print("apply refuses these without --force")

    @app.command()
    def diff(
        file: Files,
        prune: Prune = False,
        server: Server = None,
        token: Token = None,
        output: Output = OutputFormat.TABLE,
    ) -> None:
        """What `apply -f` would change on the server, and which of those jobs were changed
        outside the files since their last apply (drift). Exit 0: the server matches the
        files; 1: it differs."""
        body = _body(file, prune=prune, dry_run=True)
        result = connect(server, token).post("/api/v1/apply", body)
        rows = _change_rows(result)
        drifted = _drifted(result)
        if output is OutputFormat.JSON:
            print_json(result)
        else:
            if rows:
                print_table(["action", "job", "changes (server -> files)"], rows)
            if drifted:
                print("changed outside the files since their last apply:")
                print_table(["job", "changed (as applied -> now)", "by"], _drift_rows(drifted))
            counts = _counts(result)
            if rows:
                print(
                    f"differs: {counts['create']} to create, {counts['update']} to update, "
                    f"{counts['delete']} to delete; {len(drifted)} changed outside the files"
                    + (" (apply needs --force)" if drifted else "")
                )
            else:
                print(f"in sync: {counts['unchanged']} jobs match the files")
        if rows:
            raise typer.Exit(EXIT_FAILURE)
