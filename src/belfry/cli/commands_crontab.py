"""``belfry import-crontab``: crontabs to jobs-as-code YAML, offline (no server)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from belfry.cli.errors import EXIT_BAD_INPUT, EXIT_FAILURE, CliError

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("import-crontab")
    def import_crontab(
        files: Annotated[
            list[Path],
            typer.Argument(
                metavar="FILE...",
                help="Crontab files (crontab -l output, /etc/crontab, /etc/cron.d/*) "
                "or a cron.d directory.",
            ),
        ],
        group: Annotated[str, typer.Option(help="The jobs' group.")] = "default",
        user_crontab: Annotated[
            str | None,
            typer.Option(
                "--user-crontab",
                metavar="USER",
                help="Whose user crontab this is: the jobs' run_as.",
            ),
        ] = None,
        system: Annotated[
            bool,
            typer.Option(
                "--system",
                help="Every file has the user field (/etc/crontab and cron.d files are "
                "recognised without it).",
            ),
        ] = False,
        timezone: Annotated[
            str,
            typer.Option(
                "--timezone", "--tz", help="The zone cron ran in (the host's): the jobs' zone."
            ),
        ] = "UTC",
        output: Annotated[
            Path | None, typer.Option("--output-file", "-o", help="Write here, not to stdout.")
        ] = None,
        skip_invalid: Annotated[
            bool,
            typer.Option(
                "--skip-invalid", help="Skip invalid lines (a warning and a comment each)."
            ),
        ] = False,
    ) -> None:
        """Convert crontabs to jobs YAML (offline): what it changed is in comments."""
        # The converter (job specs, schedules) is imported by this command only.
        from belfry.services.crontab_import import (
            CrontabImportError,
            import_crontabs,
            read_crontab_sources,
        )

        if system and user_crontab is not None:
            raise CliError(
                "--user-crontab is for user crontabs; --system files name their users",
                EXIT_BAD_INPUT,
            )
        try:
            sources, warnings = read_crontab_sources(files, system=system)
            result = import_crontabs(
                sources,
                group=group,
                run_as=user_crontab,
                timezone=timezone,
                skip_invalid=skip_invalid,
            )
        except CrontabImportError as error:
            problems = error.problems
            message = (
                problems[0] if len(problems) == 1 else "invalid crontab:\n" + "\n".join(problems)
            )
            raise CliError(message, EXIT_BAD_INPUT) from None
        except RuntimeError as error:
            raise CliError(str(error), EXIT_FAILURE) from None
        for warning in [*warnings, *result.warnings]:
            print(f"warning: {warning}", file=sys.stderr)
        if output is None:
            sys.stdout.write(result.yaml)
            return
        # Written whole or not at all: a reader never sees half a file.
        temporary = output.with_name(f".{output.name}.{os.getpid()}.tmp")
        try:
            temporary.write_text(result.yaml, encoding="utf-8")
            temporary.replace(output)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise CliError(f"{output}: cannot write: {error.strerror or error}") from None
        print(f"wrote {result.jobs} jobs to {output}", file=sys.stderr)
