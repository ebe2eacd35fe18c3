"""``belfry import-crontab``: crontab files to jobs-as-code YAML, with comments saying what
changed and what could not be carried over.

Each job keeps cron's behaviour where Belfry's defaults differ: ``misfire: skip`` (cron does
not catch up runs missed while it was down) and ``overlap: allow`` (cron starts a run even
while the last one runs). The YAML is checked with the same loader as ``belfry validate``
before it is returned, so what this writes always validates.
"""

from __future__ import annotations

import io
import re
import shlex
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from belfry.core.crontab import (
    DEFAULT_SHELL,
    CrontabEntry,
    CrontabNote,
    CrontabProblem,
    is_system_crontab,
    job_name_stem,
    parse_crontab,
)
from belfry.core.names import is_valid_name
from belfry.core.schedules import ScheduleError, parse_timezone
from belfry.services.job_files import JobFileError, load_job_text

__all__ = [
    "CrontabImport",
    "CrontabImportError",
    "CrontabSource",
    "import_crontabs",
    "read_crontab_sources",
]

# Debian cron reads only cron.d files whose names are made of these (no dots: no
# ``.dpkg-old`` backups); a directory given to the importer is read the same way.
_CRON_D_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class CrontabSource:
    """One crontab to convert: its name as shown in messages, its text, and whether it has
    the user field."""

    name: str
    text: str
    system: bool


@dataclass(frozen=True)
class CrontabImport:
    yaml: str
    jobs: int
    # ``FILE:LINE: message`` lines for stderr: lines skipped (@reboot, invalid ones with
    # ``skip_invalid``), cron.d files not read.
    warnings: list[str] = field(default_factory=list)


class CrontabImportError(Exception):
    """Invalid input: ``problems`` are ``FILE:LINE: message`` lines (or a whole-input one)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def read_crontab_sources(
    paths: Sequence[Path], *, system: bool = False
) -> tuple[list[CrontabSource], list[str]]:
    """The crontabs of ``paths`` (a directory is read like ``/etc/cron.d``: each file whose
    name cron would read, sorted), and warnings about files left out.

    A file has the user field when ``system`` or when cron reads it so (``/etc/crontab``,
    files in a ``cron.d`` directory). Raises :class:`CrontabImportError` for unreadable paths.
    """
    sources: list[CrontabSource] = []
    warnings: list[str] = []
    problems: list[str] = []
    for path in paths:
        if path.is_dir():
            files = []
            for child in sorted(path.iterdir()):
                if not child.is_file():
                    continue
                if _CRON_D_NAME.match(child.name):
                    files.append((child, True))
                else:
                    warnings.append(f"{child}: not read (cron skips file names with dots)")
        else:
            files = [(path, system or is_system_crontab(path))]
        for file, is_system in files:
            try:
                if file.stat().st_size > _MAX_BYTES:
                    problems.append(f"{file}:1: larger than 1 MiB: not a crontab")
                    continue
                text = file.read_text(encoding="utf-8", errors="surrogateescape")
            except OSError as error:
                problems.append(f"{file}:1: cannot read: {error.strerror or error}")
                continue
            sources.append(CrontabSource(str(file), text, system or is_system))
    if problems:
        raise CrontabImportError(problems)
    return sources, warnings


def import_crontabs(
    sources: Sequence[CrontabSource],
    *,
    group: str = "default",
    run_as: str | None = None,
    timezone: str = "UTC",
    skip_invalid: bool = False,
) -> CrontabImport:
    """The jobs of ``sources`` as YAML that ``belfry validate`` accepts.

    ``run_as`` is the user of the user crontabs (system ones name theirs); ``timezone`` the
    zone cron ran in (the jobs' zone unless a ``CRON_TZ``/``TZ`` line says otherwise).
    Raises :class:`CrontabImportError` for a bad option or, unless ``skip_invalid``, any
    invalid line (each as ``FILE:LINE: message``); with it, they become warnings.
    """
    if not is_valid_name(group):
        raise CrontabImportError([f"--group: {group!r} is not a group name"])
    try:
        parse_timezone(timezone)
    except ScheduleError as error:
        raise CrontabImportError([f"--timezone: {error}"]) from None
    writer = _Writer(group, run_as, timezone, several_files=len(sources) > 1)
    problems: list[str] = []
    warnings: list[str] = []
    for source in sources:
        crontab = parse_crontab(source.text, system=source.system)
        for problem in crontab.problems:
            where = f"{source.name}:{problem.line}"
            problems.append(f"{where}: {problem.message}")
        for note in crontab.notes:
            if note.skipped:
                warnings.append(f"{source.name}:{note.line}: {note.message}")
        writer.add_file(source, crontab.entries, crontab.notes, crontab.problems)
    if problems and not skip_invalid:
        raise CrontabImportError(problems)
    text = writer.text([source.name for source in sources])
    try:
        load_job_text(text, "<import-crontab>")
    except JobFileError as error:
        # Only a bug here could write YAML that does not validate: never hand it out.
        raise RuntimeError(f"import-crontab wrote invalid YAML:\n{error}") from None
    return CrontabImport(
        yaml=text, jobs=writer.count, warnings=[*warnings, *problems] if skip_invalid else warnings
    )


# Said once at the top of every file written.
_HEADER = (
    "Each job keeps cron's behaviour: misfire: skip (cron does not catch up runs missed "
    "while it was down) and overlap: allow (cron starts a run even while the last one is "
    "still running); Belfry's safer choices are misfire: run_once and overlap: forbid. "
    "Each job's description is its original crontab line."
)
_UTC_NOTE = (
    "cron ran these on its host's time zone; they are in UTC here unless a job's timezone "
    "says otherwise (import with --timezone ZONE to use the host's)."
)
_WIDTH = 92


@dataclass
class _Writer:
    """Builds the YAML document: jobs in file and line order, each after the comments about
    the lines before it."""

    group: str
    run_as: str | None
    timezone: str
    jobs: CommentedSeq = field(default_factory=CommentedSeq)
    names: set[str] = field(default_factory=set)
    several_files: bool = False
    # Comments waiting for the next job (or for the end of the document).
    pending: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.jobs)

    def add_file(
        self,
        source: CrontabSource,
        entries: Sequence[CrontabEntry],
        notes: Sequence[CrontabNote],
        problems: Sequence[CrontabProblem],
    ) -> None:
        lines: list[tuple[int, CrontabEntry | CrontabNote | CrontabProblem]] = [
            *((item.line, item) for item in entries),
            *((item.line, item) for item in notes),
            *((item.line, item) for item in problems),
        ]
        if self.several_files:
            self.pending.append(
                f"from {source.name}" + (" (a system crontab)" if source.system else "")
            )
        for line, item in sorted(lines, key=lambda pair: pair[0]):
            where = f"{source.name}:{line}"
            if isinstance(item, CrontabNote):
                self._comment(f"{where}: {item.text}", item.message)
            elif isinstance(item, CrontabProblem):
                self._comment(f"{where}: {item.text}", f"skipped, invalid: {item.message}")
            else:
                self._job(item)

    def text(self, files: Sequence[str]) -> str:
        root = CommentedMap()
        root["jobs"] = self.jobs
        header = [f"Converted by belfry import-crontab from {', '.join(files)}."]
        header += _wrap(_HEADER)
        if self.timezone == "UTC":
            header += _wrap(_UTC_NOTE)
        root.yaml_set_start_comment("\n".join(header))
        yaml = YAML()
        yaml.indent(mapping=2, sequence=4, offset=2)
        yaml.width = 4096  # long commands stay on one line, as in the crontab
        out = io.StringIO()
        yaml.dump(root, out)
        # ruamel has no comment slot after a sequence's last item: trailing comments
        # (lines after the last job) are plain comment lines at the end of the file.
        tail = "".join(f"# {line}\n" if line else "#\n" for line in self.pending)
        return out.getvalue() + tail

    def _comment(self, heading: str, message: str) -> None:
        self.pending.append(heading)
        self.pending.extend(f"  {line}" for line in _wrap(message))

    def _job(self, entry: CrontabEntry) -> None:
        changes: list[str] = []
        job = CommentedMap()
        job["name"] = self._unique(job_name_stem(entry.command))
        job["group"] = self.group
        job["description"] = entry.text
        job["schedule"] = entry.schedule
        timezone = entry.timezone or self.timezone
        if timezone != "UTC":
            job["timezone"] = timezone
        job["command"] = _command(entry, changes)
        user = entry.user if entry.user is not None else self.run_as
        if user is not None:
            job["run_as"] = user
        if entry.env:
            job["env"] = CommentedMap(entry.env)
        job["overlap"] = "allow"
        job["misfire"] = "skip"
        self.jobs.append(job)
        comments = self.pending + [line for change in changes for line in _wrap(change)]
        self.pending = []
        if comments:
            self.jobs.yaml_set_comment_before_after_key(
                len(self.jobs) - 1, before="\n".join(comments), indent=2
            )

    def _unique(self, stem: str) -> str:
        name, number = stem, 1
        while name in self.names:
            number += 1
            name = f"{stem}-{number}"
        self.names.add(name)
        return name


def _command(entry: CrontabEntry, changes: list[str]) -> str | list[str]:
    """The job's command, running what cron ran: ``entry.command`` under cron's ``SHELL``,
    fed ``entry.stdin`` (Belfry's own stdin is /dev/null)."""
    command = entry.command
    if not command.rstrip().endswith("\\"):
        command = command.rstrip()  # trailing blanks mean nothing to the shell
    if entry.stdin is not None:
        changes.append(
            "cron sent the text after % to the command's stdin; Belfry gives /dev/null, so "
            f"printf pipes it in to the command, run by {entry.shell} -c as cron did"
        )
        return (
            f"printf '%s' {shlex.quote(entry.stdin)} | "
            f"{shlex.quote(entry.shell)} -c {shlex.quote(command)}"
        )
    if entry.shell != DEFAULT_SHELL:
        changes.append(f"SHELL={entry.shell}: runs as [{entry.shell}, -c, command] as cron did")
        argv = CommentedSeq([entry.shell, "-c", command])
        argv.fa.set_flow_style()  # one line, like the crontab's
        return argv
    return command


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(text, _WIDTH, break_long_words=False, break_on_hyphens=False)
