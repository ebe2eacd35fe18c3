"""``belfry backfill GROUP/NAME --from T --to T [--dry-run]``: run a past range of a job's
schedule, each occurrence at most once."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer

from belfry.cli.commands_jobs import JobArg, job_path
from belfry.cli.errors import EXIT_BAD_INPUT, CliError
from belfry.cli.options import Output, Server, Token, connect
from belfry.cli.rendering import OutputFormat, print_json, print_table, short_time

__all__ = ["register"]


class Overlap(StrEnum):
    FORBID = "forbid"
    ALLOW = "allow"


def _instant(text: str, option: str) -> str:
    """RFC 3339 for the API; a time without a zone is UTC (as ``belfry explain --from``)."""
    try:
        instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(
            f"{option}: not an RFC 3339 time: {text!r} (e.g. 2027-01-01T10:00:00Z)",
            EXIT_BAD_INPUT,
        ) from None
    instant = instant if instant.tzinfo else instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def register(app: typer.Typer) -> None:
    @app.command()
    def backfill(
        job: JobArg,
        from_: Annotated[
            str, typer.Option("--from", help="First instant of the range (RFC 3339; naive = UTC).")
        ],
        to: Annotated[str, typer.Option("--to", help="Last instant of the range, included.")],
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="List the occurrences; run nothing.")
        ] = False,
        overlap: Annotated[
            Overlap,
            typer.Option(
                "--overlap",
                help="forbid: one at a time, never alongside the job's other runs; "
                "allow: up to --max-parallel at once, alongside them.",
            ),
        ] = Overlap.FORBID,
        max_parallel: Annotated[
            int, typer.Option("--max-parallel", min=1, help="Backfill runs at once (allow).")
        ] = 1,
        rate: Annotated[
            float | None,
            typer.Option("--rate", min=0.001, help="Runs started per minute, at most."),
        ] = None,
        server: Server = None,
        token: Token = None,
        output: Output = OutputFormat.TABLE,
    ) -> None:
        """Run the occurrences of a past range of a job's schedule (its zone, DST rules and
        calendars); an occurrence that already ran is not run again."""
        body: dict[str, Any] = {
            "from": _instant(from_, "--from"),
            "to": _instant(to, "--to"),
            "dry_run": dry_run,
            "overlap": overlap.value,
            "max_parallel": max_parallel,
            "rate": rate,
        }
        data = connect(server, token).post(job_path(job) + "/backfill", body)
        if output is OutputFormat.JSON:
            print_json(data)
            return
        _print(data)


def _print(data: dict[str, Any]) -> None:
    run_of = {run["scheduled_for"]: run["id"] for run in data["runs"]}
    print_table(
        ["scheduled for", "status", "attempt", "run", "note"],
        [
            [
                short_time(item["scheduled_for"]),
                "will run" if item["status"] == "run" and data["dry_run"] else item["status"],
                item["attempt"] or "-",
                run_of.get(item["scheduled_for"], item["run_id"]) or "-",
                item["note"] or "",
            ]
            for item in data["occurrences"]
        ],
    )
    counts: dict[str, int] = {}
    for item in data["occurrences"]:
        counts[item["status"]] = counts.get(item["status"], 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none"
    if data["dry_run"]:
        print(f"dry run: {len(data['occurrences'])} occurrences ({summary}); nothing was run")
    else:
        print(f"{len(data['runs'])} backfill runs created ({summary})")
