"""Crontab text as cron reads it, for ``belfry import-crontab`` (no I/O: text in, records out).

The rules are Vixie/Debian cron's (crontab(5)):

* A line is blank, a comment (``#`` first), an environment setting ``NAME = value`` (the
  value may be quoted to keep blanks) or a job: five time fields, or an ``@`` alias, then,
  in a *system* crontab (``/etc/crontab``, ``/etc/cron.d/*``), the user to run as, then the
  command (the rest of the line, as written).
* A setting applies to the job lines after it, not to those before.
* ``MAILTO``, ``SHELL`` and ``CRON_TZ`` (cronie's schedule zone) are cron's own settings;
  ``TZ`` is the command's, and Belfry also takes it as the schedule's zone.
* In the command, the first unescaped ``%`` ends the command: the rest goes to its stdin,
  each further unescaped ``%`` as a newline; ``\\%`` is a literal ``%``.

Only what cron itself accepts is accepted: numbers, names (``JAN``, ``MON-FRI``), ``*``,
ranges, steps and lists, not Belfry's extras (``H``, ``L``, ``W``, ``#``, ``?``, seconds),
which would be a typo in a crontab. Every job's expression is kept exactly as written and
checked with :func:`belfry.core.schedules.parse_schedule`, so it means the same to Belfry.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import PurePath

from belfry.core.schedules import ScheduleError, parse_schedule, parse_timezone

__all__ = [
    "DEFAULT_SHELL",
    "Crontab",
    "CrontabEntry",
    "CrontabNote",
    "CrontabProblem",
    "is_system_crontab",
    "job_name_stem",
    "parse_crontab",
    "split_percent",
]

DEFAULT_SHELL = "/bin/sh"
# The aliases cron knows; @reboot is recognised only to be reported as not carried over.
_ALIASES = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
_FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")
# One item of a list: ``*`` or a value or a range of values, with an optional step. Names
# are three letters (month and weekday fields; parse_schedule rejects them elsewhere).
_VALUE = r"(?:\d+|[A-Za-z]{3})"
_ITEM = re.compile(rf"(?:\*|{_VALUE}(?:-{_VALUE})?)(?:/\d+)?")
# ``NAME = value``, the name optionally quoted (cron's load_env).
_ENV = re.compile(r"""^\s*("[^"]*"|'[^']*'|[^\s=]+)\s*=\s*(.*)$""")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Commands that only wrap the real one: the job is named after what they run.
_WRAPPERS = frozenset(
    {"nice", "ionice", "nohup", "chronic", "timeout", "flock", "sudo", "env", "exec", "time"}
)
_OPERATORS = frozenset({"&&", "||", ";", "|", "&"})
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_INTERPRETERS = re.compile(r"^(?:python|perl|ruby|php|node|bash|sh|dash|zsh|java)[0-9.]*$")


@dataclass(frozen=True)
class CrontabEntry:
    """One job line, with the settings in effect where it stands."""

    line: int
    text: str
    schedule: str
    # The command as cron's shell gets it (before the first unescaped %, ``\\%`` as %).
    command: str
    # What cron writes to the command's stdin (after the first unescaped %), or None.
    stdin: str | None
    # The user field of a system crontab.
    user: str | None
    # Every NAME=value setting above the line except MAILTO and CRON_TZ (cron's own).
    env: dict[str, str]
    shell: str = DEFAULT_SHELL
    # None when no MAILTO line came before; "" when it said not to mail.
    mailto: str | None = None
    # CRON_TZ (or TZ) in effect, or None.
    timezone: str | None = None


@dataclass(frozen=True)
class CrontabNote:
    """A line that sets something worth telling the reader about, or that is not carried
    over (``@reboot``)."""

    line: int
    text: str
    message: str
    # A line skipped (not carried over), rather than a setting explained.
    skipped: bool = False


@dataclass(frozen=True)
class CrontabProblem:
    """An invalid line: cron would reject it too."""

    line: int
    message: str
    text: str = ""


@dataclass(frozen=True)
class Crontab:
    entries: list[CrontabEntry] = field(default_factory=list)
    # In line order; each before the entries it concerns.
    notes: list[CrontabNote] = field(default_factory=list)
    problems: list[CrontabProblem] = field(default_factory=list)


def is_system_crontab(path: PurePath) -> bool:
    """Whether cron reads ``path`` with a user field: ``/etc/crontab`` and ``cron.d`` files."""
    return path.parent.name == "cron.d" or (path.name == "crontab" and path.parent.name == "etc")


def parse_crontab(text: str, *, system: bool = False) -> Crontab:
    """The jobs, notes and problems of a crontab, in line order."""
    result = Crontab()
    env: dict[str, str] = {}
    shell = DEFAULT_SHELL
    mailto: str | None = None
    timezone: str | None = None
    cron_tz = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r")
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        setting = _ENV.match(line)
        if setting and not stripped.startswith(("@", "*")) and not stripped[0].isdigit():
            name, value = _unquote(setting.group(1)), _unquote(setting.group(2).rstrip())
            if not _ENV_NAME.match(name):
                result.problems.append(
                    CrontabProblem(
                        number, f"{name!r} is not a valid environment variable name", stripped
                    )
                )
                continue
            if name in ("CRON_TZ", "TZ"):
                if value:
                    try:
                        parse_timezone(value)
                    except ScheduleError as error:
                        result.problems.append(CrontabProblem(number, f"{name}: {error}", stripped))
                        continue
                # CRON_TZ is the schedule's zone; TZ only counts when no CRON_TZ was given.
                if name == "CRON_TZ" or not cron_tz:
                    timezone = value or None
                    cron_tz = cron_tz or name == "CRON_TZ"
            if name == "MAILTO":
                mailto = value
                result.notes.append(CrontabNote(number, stripped, _mailto_message(value)))
            elif name == "CRON_TZ":
                continue
            else:
                if name == "SHELL":
                    shell = value or DEFAULT_SHELL
                if name == "TZ" and not cron_tz:
                    result.notes.append(
                        CrontabNote(
                            number,
                            stripped,
                            "TZ is also the timezone of the jobs below "
                            "(cron itself scheduled them in its own zone)",
                        )
                    )
                env[name] = value
            continue
        try:
            entry = _job(line, system)
        except _LineError as error:
            result.problems.append(CrontabProblem(number, str(error), stripped))
            continue
        if entry is None:
            result.notes.append(
                CrontabNote(
                    number,
                    stripped,
                    "@reboot is not supported (Belfry schedules are about time, not host "
                    "boots): run it from the host's init system; line skipped",
                    skipped=True,
                )
            )
            continue
        result.entries.append(
            CrontabEntry(
                line=number,
                text=stripped,
                schedule=entry[0],
                command=entry[2],
                stdin=entry[3],
                user=entry[1],
                env=dict(env),
                shell=shell,
                mailto=mailto,
                timezone=timezone,
            )
        )
    return result


def split_percent(command: str) -> tuple[str, str | None]:
    """``command`` as cron runs it: the part before the first unescaped ``%`` (``\\%`` made
    ``%``, other backslashes kept), and the stdin cron feeds it (None without a ``%``)."""
    head: list[str] = []
    escaped = False
    rest: str | None = None
    for index, char in enumerate(command):
        if escaped:
            head.append(char if char == "%" else "\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            rest = command[index + 1 :]
            break
        else:
            head.append(char)
    if escaped:
        head.append("\\")
    if rest is None:
        return "".join(head), None
    stdin: list[str] = []
    escaped = False
    for char in rest:
        if escaped:
            stdin.append(char if char == "%" else "\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            stdin.append("\n" if char == "%" else char)
    if escaped:
        stdin.append("\\")
    return "".join(head), "".join(stdin)


def job_name_stem(command: str) -> str:
    """A job name from a command's first word(s): ``/usr/bin/php artisan run`` →
    ``php-artisan``; ``cd /srv && ./backup.sh`` → ``backup``. Not unique: callers add -2..."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        words = command.split()
    picked: list[str] = []
    in_cd = False  # ``cd DIR && cmd``: the job is named after cmd
    for word in words:
        if word in _OPERATORS:
            if picked:
                break
            in_cd = False
            continue
        if in_cd:
            continue
        if not picked:
            if word == "cd":
                in_cd = True
            elif not (
                word in _WRAPPERS
                or _ASSIGNMENT.match(word)
                or word.startswith("-")
                or word.isdigit()
            ):
                picked.append(_stem(word))
                if not _INTERPRETERS.match(picked[0]):
                    break
        elif not word.startswith("-"):
            picked.append(_stem(word))
            break
    slug = re.sub(r"[^a-z0-9]+", "-", "-".join(picked).lower()).strip("-")[:60].strip("-")
    return slug or "job"


class _LineError(ValueError):
    pass


def _job(line: str, system: bool) -> tuple[str, str | None, str, str | None] | None:
    """(schedule, user, command, stdin) of a job line; None for @reboot."""
    rest = line.lstrip()
    if rest.startswith("@"):
        alias, rest = _word(rest)
        if alias.lower() == "@reboot":
            return None
        if alias.lower() not in _ALIASES:
            raise _LineError(
                f"unknown schedule {alias!r} (cron knows @reboot, {', '.join(sorted(_ALIASES))})"
            )
        schedule = alias
    else:
        fields: list[str] = []
        for _ in _FIELD_NAMES:
            word, rest = _word(rest)
            if not word:
                break
            fields.append(word)
        if len(fields) < len(_FIELD_NAMES) or not rest:
            raise _LineError(
                "expected five time fields (or an @alias), "
                + ("a user, " if system else "")
                + "then a command"
            )
        for name, value in zip(_FIELD_NAMES, fields, strict=True):
            for item in value.split(","):
                if not _ITEM.fullmatch(item):
                    raise _LineError(
                        f"{name}: {value!r} is not a cron field (numbers, 3-letter names, *, "
                        "ranges, steps and lists)"
                    )
        schedule = " ".join(fields)
    try:
        parse_schedule(schedule)
    except ScheduleError as error:
        raise _LineError(str(error)) from None
    user: str | None = None
    if system:
        user, rest = _word(rest)
        if not user or not rest:
            raise _LineError("expected a user, then a command (a system crontab)")
    command, stdin = split_percent(rest)
    if not command.strip():
        raise _LineError("no command before the first %")
    return schedule, user, command, stdin


def _stem(word: str) -> str:
    """The file name of a command word, without a script extension."""
    return re.sub(r"\.(?:sh|py|pl|rb|php|js)$", "", PurePath(word).name or word)


def _word(text: str) -> tuple[str, str]:
    """The first blank-separated word of ``text`` and what follows it, leading blanks gone."""
    parts = text.lstrip(" \t").split(maxsplit=1)
    if not parts:
        return "", ""
    return parts[0], (parts[1] if len(parts) > 1 else "")


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _mailto_message(value: str) -> str:
    if not value:
        return "MAILTO is empty: cron mailed no output for the jobs below"
    return (
        f"cron mailed the output of the jobs below to {value}; Belfry keeps it in each run's "
        "history: to be alerted on failure, define a channel (e.g. email: {to: [...]}) "
        "and add notify: [its name] to the jobs"
    )
