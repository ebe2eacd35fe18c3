"""Job commands: validate, export, jobs, show, pause, resume, explain."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from ruamel.yaml import YAML

from belfry.cli.errors import EXIT_BAD_INPUT, CliError
from belfry.cli.options import Output, PageSize, Server, Token, connect
from belfry.cli.rendering import OutputFormat, print_json, print_table, short_time
from belfry.core.names import JobKey

# The server's largest page of jobs: listing a whole fleet in the fewest requests.
JOBS_PER_REQUEST = 1000

__all__ = ["Files", "load_files", "register"]

Files = Annotated[
    list[Path], typer.Option("--file", "-f", help="A YAML file or a directory of them.")
]
JobArg = Annotated[str, typer.Argument(metavar="GROUP/NAME")]


def job_path(text: str) -> str:
    try:
        key = JobKey.parse(text)
    except ValueError as error:
        raise CliError(str(error), EXIT_BAD_INPUT) from None
    return f"/api/v1/jobs/{key.group}/{key.name}"


def schedule_text(schedule: str | list[str] | None, after: str | None = None) -> str:
    """A job's schedule on one line: a list of schedules joined with `` | ``; a job that
    runs after others says after which."""
    if schedule is None:
        return after or "-"
    return schedule if isinstance(schedule, str) else " | ".join(schedule)


def load_files(files: list[Path]) -> Any:
    # Imported by the commands that read job files only: the others start faster.
    from belfry.services.job_files import JobFileError, load_job_files

    try:
        return load_job_files(files)
    except JobFileError as error:
        raise CliError(
            "invalid job files:\n" + str(error) if len(error.problems) > 1 else str(error),
            EXIT_BAD_INPUT,
        ) from None


def _parse_instant(text: str, option: str) -> datetime:
    try:
        instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(
            f"{option}: not an ISO 8601 time: {text!r} (e.g. 2027-01-01T10:00:00Z)",
            EXIT_BAD_INPUT,
        ) from None
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


def _paused_text(job: dict[str, Any]) -> str:
    """``no``, ``yes``, ``yes: NOTE``, ``yes until TIME: NOTE``."""
    if not job["paused"]:
        return "no"
    until = f" until {short_time(job['resume_at'])}" if job.get("resume_at") else ""
    note = f": {job['pause_note']}" if job["pause_note"] else ""
    return f"yes{until}{note}"


def register(app: typer.Typer) -> None:
    @app.command()
    def export(
        group: Annotated[str | None, typer.Option(help="Only this group.")] = None,
        server: Server = None,
        token: Token = None,
        page_size: PageSize = None,
    ) -> None:
        """Print jobs as YAML that `belfry apply -f` takes back unchanged."""
        client = connect(server, token)
        documents = []
        for job in client.get_all("/api/v1/jobs", group=group, limit=page_size or JOBS_PER_REQUEST):
            spec = client.get(job_path(job["job"]))["spec"]
            documents.append({"name": spec.pop("name"), "group": job["group"], **spec})
        stored = {item["name"]: item["spec"] for item in client.get("/api/v1/calendars")}
        wanted = set(stored) if group is None else _named_calendars(documents, stored)
        calendars = [stored[name] for name in sorted(wanted) if name in stored]
        yaml = YAML()
        yaml.default_flow_style = False
        yaml.dump(
            {"calendars": calendars, "jobs": documents} if calendars else {"jobs": documents},
            sys.stdout,
        )

    @app.command()
    def validate(file: Files) -> None:
        """Check job files offline; errors as file:line: field: message."""
        loaded = load_files(file)
        for warning in loaded.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        calendars = f", {len(loaded.calendars)} calendars" if loaded.calendars else ""
        print(f"ok: {len(loaded.jobs)} jobs{calendars} in {len(file)} path(s)")

    @app.command()
    def jobs(
        group: Annotated[str | None, typer.Option(help="Only this group.")] = None,
        server: Server = None,
        token: Token = None,
        output: Output = OutputFormat.TABLE,
        page_size: PageSize = None,
    ) -> None:
        """List jobs: schedule, zone, next run, last state, paused."""
        data = connect(server, token).get_all(
            "/api/v1/jobs", group=group, limit=page_size or JOBS_PER_REQUEST
        )
        if output is OutputFormat.JSON:
            print_json(data)
            return
        print_table(
            ["job", "schedule", "tz", "next run", "last state", "paused"],
            [
                [
                    job["job"],
                    schedule_text(job["schedule"], job.get("after")),
                    job["timezone"],
                    short_time(job["next_run"]),
                    job["last_state"] or "-",
                    _paused_text(job),
                ]
                for job in data
            ],
        )

    @app.command()
    def show(
        job: JobArg,
        server: Server = None,
        token: Token = None,
        output: Output = OutputFormat.TABLE,
    ) -> None:
        """A job's spec, its next 5 instants, and its recent runs and skips."""
        data = connect(server, token).get(job_path(job))
        if output is OutputFormat.JSON:
            print_json(data)
            return
        print(f"{data['job']}  ({data['description']})")
        if data["paused"]:
            print("PAUSED" + _paused_text(data).removeprefix("yes"))
        if data.get("drift"):
            print(f"CHANGED OUTSIDE THE FILES since their last apply: {data['drift']['summary']}")
        for key, value in data["spec"].items():
            if key not in {"name", "group"}:
                print(f"  {key}: {value}")
        if data["next"]:
            print("next:")
        for instant in data["next"]:
            print(f"  {short_time(instant)}")
        if data.get("followed_by"):
            print(f"followed by: {', '.join(data['followed_by'])}")
        _print_runs(data["recent_runs"], title="recent runs")

    @app.command()
    def pause(
        job: JobArg,
        note: Annotated[str | None, typer.Option(help="Why (shown with the job).")] = None,
        until: Annotated[
            str | None,
            typer.Option(help="Resume by itself at this time, e.g. 2026-12-01T10:00Z."),
        ] = None,
        for_: Annotated[
            str | None, typer.Option("--for", help="Resume by itself after this long, e.g. 2h.")
        ] = None,
        server: Server = None,
        token: Token = None,
        output: Output = OutputFormat.TABLE,
    ) -> None:
        """Pause a job: its occurrences are recorded as skipped until resumed."""
        if until is not None and for_ is not None:
            raise CliError("--until, --for: give one of them", EXIT_BAD_INPUT)
        resume_at = None
        if until is not None:
            resume_at = _parse_instant(until, "--until")
        elif for_ is not None:
            from belfry.core.durations import parse_duration

            try:
                length = parse_duration(for_)
            except ValueError as error:
                raise CliError(f"--for: {error}", EXIT_BAD_INPUT) from None
            if length <= timedelta(0):
                raise CliError(f"--for: must be positive, got {for_!r}", EXIT_BAD_INPUT)
            resume_at = datetime.now(UTC) + length
        body = {"note": note, "until": resume_at.isoformat() if resume_at else None}
        data = connect(server, token).post(job_path(job) + "/pause", body)
        if output is OutputFormat.JSON:
            print_json(data)
            return
        until_text = f" until {short_time(data['resume_at'])}" if data.get("resume_at") else ""
        print(f"paused {data['job']}{until_text}")

    @app.command()
    def resume(
        job: JobArg, server: Server = None, token: Token = None, output: Output = OutputFormat.TABLE
    ) -> None:
        """Resume a paused job from its next occurrence."""
        data = connect(server, token).post(job_path(job) + "/resume")
        print_json(data) if output is OutputFormat.JSON else print(f"resumed {data['job']}")

    @app.command()
    def explain(
        schedule: Annotated[
            str | None, typer.Argument(help='e.g. "30 2 * * *" or "every 5m"')
        ] = None,
        tz: Annotated[str, typer.Option("--tz", help="IANA time zone.")] = "UTC",
        job: Annotated[
            str | None,
            typer.Option(
                "--job", metavar="GROUP/NAME", help="A job's schedule, as the server runs it."
            ),
        ] = None,
        server: Server = None,
        token: Token = None,
        from_: Annotated[
            str | None, typer.Option("--from", help="Start after this time [default: now].")
        ] = None,
        count: Annotated[int, typer.Option("-n", min=1, max=1000, help="How many instants.")] = 5,
        output: Output = OutputFormat.TABLE,
    ) -> None:
        """Explain a schedule in words with its next instants (offline, except --job)."""
        after = _parse_instant(from_, "--from") if from_ else datetime.now(UTC)
        if (schedule is None) == (job is None):
            raise CliError("give a SCHEDULE or --job GROUP/NAME (one of them)", EXIT_BAD_INPUT)
        if job is not None:
            # The job as its scheduler sees it: its own spread (H), bounds, zone, DST
            # rules and calendars, which live on the server.
            path = job_path(job) + "/explain"
            document = connect(server, token).get(path, n=count, **{"from": after.isoformat()})
        else:
            assert schedule is not None
            # Schedule maths here only: every other command starts faster without it.
            from belfry.core.explanations import explain as explain_schedule
            from belfry.core.schedules import ScheduleError

            try:
                document = explain_schedule(schedule, tz, after=after, count=count).to_json()
            except ScheduleError as error:
                raise CliError(f"schedule: {error}", EXIT_BAD_INPUT) from None
        if output is OutputFormat.JSON:
            print_json(document)
            return
        _print_explanation(document)


def _print_explanation(document: dict[str, Any]) -> None:
    """The description, then each occurrence: runs numbered, marks with their note."""
    print(document["description"])
    rows = []
    number = 0
    for item in document["occurrences"]:
        if item["runs_at"] is not None:
            number += 1
        shown = item["scheduled_for"] or item["runs_at"]
        note = item["note"] if item["status"] in ("runs",) else f"{item['status']}: {item['note']}"
        rows.append(
            [
                number if item["runs_at"] is not None else "-",
                short_time(shown) if shown else "-",
                item["local"],
                note,
            ]
        )
    columns = ["#", "UTC", f"local ({document['timezone']})"]
    if any(row[3] for row in rows):
        columns.append("note")
    else:
        rows = [row[:3] for row in rows]
    print_table(columns, rows)


def _named_calendars(jobs: list[dict[str, Any]], stored: dict[str, dict[str, Any]]) -> set[str]:
    """The calendars these jobs name, with the calendars those include or exclude."""
    pending = [name for job in jobs for name in (*job.get("exclude", []), *job.get("only", []))]
    found: set[str] = set()
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            calendar = stored.get(name, {})
            pending.extend([*calendar.get("include", []), *calendar.get("exclude", [])])
    return found


def _print_runs(runs: list[dict[str, Any]], title: str | None = None) -> None:
    print_table(
        ["id", "job", "attempt", "scheduled for", "state", "exit", "started", "finished", "reason"],
        [
            [
                run["id"],
                run["job"],
                run["attempt"],
                short_time(run["scheduled_for"]),
                run["state"],
                "-" if run["exit_code"] is None else run["exit_code"],
                short_time(run["started_at"]),
                short_time(run["finished_at"]),
                run["reason"] or "",
            ]
            for run in runs
        ],
        title=title,
    )
