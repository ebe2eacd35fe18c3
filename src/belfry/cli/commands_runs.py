"""Run commands: run, runs, logs, kill."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from belfry.cli.client import ApiClient
from belfry.cli.commands_jobs import JobArg, _print_runs, job_path
from belfry.cli.errors import EXIT_BAD_INPUT, CliError
from belfry.cli.options import Output, Server, Token, connect
from belfry.cli.rendering import OutputFormat, print_json, print_table, short_time
from belfry.core.states import RunState

__all__ = ["register"]

_STATES = ", ".join(state.value for state in RunState)


def follow(client: ApiClient, run_id: int, *, live: bool) -> dict[str, Any]:
    """Print a run's output (stdout to stdout, the rest to stderr); with ``live``, keep
    following until the run ends. Returns the run as last seen."""
    after = -1
    while True:
        page = client.get(f"/api/v1/runs/{run_id}/output", after=after, wait=25 if live else 0)
        for chunk in page["chunks"]:
            stream = sys.stdout if chunk["stream"] == "stdout" else sys.stderr
            stream.write(chunk["data"])
            stream.flush()
            after = chunk["seq"]
        if page["done"] or (not live and not page["chunks"]):
            run: dict[str, Any] = page["run"]
            return run


def _exit_code_of(run: dict[str, Any]) -> int:
    if run["state"] == RunState.SUCCEEDED:
        return 0
    code = run["exit_code"]
    # A failure that exited 0 (failure_pattern) or was killed must not look like success.
    return code if isinstance(code, int) and 0 < code < 256 else 1


def _started(run: dict[str, Any]) -> str:
    where = f" on worker {run['target']}" if run.get("target") else ""
    if run["state"] == RunState.SKIPPED:
        return f"run {run['id']} of {run['job']} skipped: {run['reason']}"
    return f"started run {run['id']} of {run['job']}{where}"


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        job: JobArg,
        wait: Annotated[
            bool,
            typer.Option(
                "--wait",
                help="Stream the output; exit with the run's code. A job with target: all "
                "runs once per worker: each run's output in turn, the first failing code.",
            ),
        ] = False,
        server: Server = None,
        token: Token = None,
        output: Output = OutputFormat.TABLE,
    ) -> None:
        """Trigger a run now (with target: all, one run per live worker of the job)."""
        client = connect(server, token, timeout=60)
        started = client.post(job_path(job) + "/run")
        made: list[dict[str, Any]] = started.get("runs") or [started]
        if not wait:
            if output is OutputFormat.JSON:
                print_json(started)
            else:
                for run in made:
                    print(_started(run))
            # Nothing started (target: all with no live worker) is no success.
            if all(run["state"] == RunState.SKIPPED for run in made):
                raise typer.Exit(1)
            return
        finals = [follow(client, run["id"], live=True) for run in made]
        if output is OutputFormat.JSON:
            print_json(finals[0] if len(finals) == 1 else finals)
        for final in finals:
            if output is not OutputFormat.JSON and final["state"] != RunState.SUCCEEDED:
                print(
                    f"belfry: run {final['id']} {final['state']}"
                    + (f": {final['reason']}" if final["reason"] else ""),
                    file=sys.stderr,
                )
        raise typer.Exit(next((code for f in finals if (code := _exit_code_of(f))), 0))

    @app.command()
    def runs(
        job: Annotated[str | None, typer.Argument(metavar="[GROUP/NAME]")] = None,
        state: Annotated[
            list[str] | None, typer.Option(help=f"Only runs in this state ({_STATES}).")
        ] = None,
        limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
        server: Server = None,
        token: Token = None,
        output: Output = OutputFormat.TABLE,
    ) -> None:
        """Run history, skips included, newest first."""
        for value in state or []:
            if value not in {s.value for s in RunState}:
                raise CliError(
                    f"--state: unknown state {value!r} (one of {_STATES})", EXIT_BAD_INPUT
                )
        if job is not None:
            job_path(job)  # rejects a malformed GROUP/NAME with exit 2 before any request
        data = connect(server, token).get("/api/v1/runs", job=job, state=state, limit=limit)
        if output is OutputFormat.JSON:
            print_json(
                [
                    {
                        key: run[key]
                        for key in (
                            "id",
                            "job",
                            "attempt",
                            "scheduled_for",
                            "state",
                            "reason",
                            "exit_code",
                            "started_at",
                            "finished_at",
                            "worker",
                            "host",
                        )
                    }
                    for run in data
                ]
            )
            return
        _print_runs(data)

    @app.command()
    def logs(
        run_id: Annotated[int, typer.Argument(metavar="RUN_ID")],
        follow_: Annotated[
            bool, typer.Option("--follow", "-f", help="Follow live until the run ends.")
        ] = False,
        server: Server = None,
        token: Token = None,
        output: Output = OutputFormat.TABLE,
    ) -> None:
        """A run's output."""
        client = connect(server, token, timeout=60)
        if output is OutputFormat.JSON:
            chunks: list[Any] = []
            after = -1
            while True:
                page = client.get(f"/api/v1/runs/{run_id}/output", after=after, limit=10000)
                chunks += page["chunks"]
                if not page["chunks"]:
                    break
                after = page["chunks"][-1]["seq"]
            print_json({"run": page["run"], "chunks": chunks})
            return
        follow(client, run_id, live=follow_)

    @app.command()
    def kill(
        run_id: Annotated[int, typer.Argument(metavar="RUN_ID")],
        server: Server = None,
        token: Token = None,
        output: Output = OutputFormat.TABLE,
    ) -> None:
        """Kill a run's whole process tree."""
        data = connect(server, token).post(f"/api/v1/runs/{run_id}/kill")
        if output is OutputFormat.JSON:
            print_json(data)
        else:
            print_table(
                ["id", "job", "state", "since"],
                [
                    [
                        data["id"],
                        data["job"],
                        data["state"]
                        if data["state"] == "killed"
                        else f"{data['state']} (kill requested)",
                        short_time(data["started_at"]),
                    ]
                ],
            )
