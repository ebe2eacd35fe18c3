"""The ``belfry`` command line (INTERFACE.md): exit 0 ok, 1 failure, 2 bad input."""

from __future__ import annotations

import sys
from typing import Any

import typer

from belfry.cli import (
    commands_accounts,
    commands_alerts,
    commands_apply,
    commands_backfill,
    commands_calendars,
    commands_cluster,
    commands_crontab,
    commands_jobs,
    commands_maintenance,
    commands_runs,
    commands_server,
    commands_worker,
)
from belfry.cli.errors import CliError

__all__ = ["app", "main"]

app = typer.Typer(
    name="belfry",
    help="Belfry: a highly available, language-agnostic distributed cron.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
commands_server.register(app)
commands_jobs.register(app)
commands_apply.register(app)
commands_runs.register(app)
commands_calendars.register(app)
commands_cluster.register(app)
commands_worker.register(app)
commands_accounts.register(app)
commands_alerts.register(app)
commands_backfill.register(app)
commands_crontab.register(app)
commands_maintenance.register(app)


def main(argv: list[str] | None = None) -> Any:
    try:
        return app(args=argv, standalone_mode=True)
    except CliError as error:
        print(f"belfry: {error.message}", file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
