"""Jobs as code: load and check the YAML files of ``belfry validate`` and ``belfry apply``
(and of the web UI's apply page), and write them back (``export``).

A path is a file or a directory (every ``*.yaml`` / ``*.yml`` below it, sorted, hidden
files and directories skipped). A file is a mapping whose ``jobs:`` key holds a list of
jobs (see INTERFACE.md "Jobs as code"); an empty file, or one with an empty ``jobs:``, is
fine.

Nothing is half loaded: every problem in every file is collected first, then
:class:`JobFileError` is raised with all of them, each printed as
``file:line: field: message``, for example::

    jobs.yaml:12: jobs[1].timezone: unknown time zone 'Mars/Base' (use an IANA name ...)
    jobs.yaml:20: jobs[2].retries.maxx: unknown field (did you mean 'max'?)

A secret env value (``TOKEN: {secret: VALUE}``) is never quoted in a problem, so that a CI
log of ``belfry validate`` or ``apply`` cannot show it.

Field paths index the ``jobs:`` list from 0, like ``jq`` and ``yq``; problems with a whole
file use the field ``file`` (not found, too large, not a mapping) or ``yaml`` (syntax). The
line is that of the offending key (unknown keys) or value (bad values; the key's line for an
empty value or a block mapping/list), of the job (or the nested key) lacking a required key,
the YAML parser's line for syntax errors, and 1 when a whole file is at fault.
"""

from __future__ import annotations

import difflib
import io
import os
import re
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import YAMLError

from belfry.core.alerts import GroupSpec
from belfry.core.calendars import CalendarError, CalendarSpec, compile_calendars
from belfry.core.chains import find_cycle
from belfry.core.channels import ChannelSpec
from belfry.core.durations import parse_duration
from belfry.core.env_secrets import secret_input_problems
from belfry.core.jobs import JobKey, JobSpec

__all__ = [
    "MAX_FILE_BYTES",
    "YAML_SUFFIXES",
    "JobFileError",
    "LoadedJobs",
    "Problem",
    "SourceLocation",
    "calendars_named",
    "dump_job_files",
    "load_job_files",
    "load_job_text",
]

MAX_FILE_BYTES = 5 * 1024 * 1024
YAML_SUFFIXES = (".yaml", ".yml")

# The top-level sections, and what one item of each is called.
_SECTIONS = {"jobs": "job", "calendars": "calendar", "channels": "channel", "groups": "group"}
# Top-level sections the format will have but this version cannot apply yet.
_PLANNED_SECTIONS: dict[str, str] = {}
_KNOWN_SECTIONS = (*_SECTIONS, *_PLANNED_SECTIONS)

# Pydantic error types that mean "wrong kind of value", and the kind that was expected.
_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
# Errors about a key itself rather than its value: reported on the key's line.
_KEY_ERRORS = {"extra_forbidden", "invalid_key"}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
# A job that is valid in every other field, to find which field makes validation crash.
# (And a calendar valid in every other field, for the same purpose.)
_PROBES: dict[type[BaseModel], dict[str, Any]] = {
    JobSpec: {"name": "probe", "schedule": "every 1m", "command": "true"},
    CalendarSpec: {"name": "probe", "dates": ["2027-01-01"]},
    ChannelSpec: {"name": "probe", "webhook": {"url": "http://probe"}},
    GroupSpec: {"name": "probe"},
}
_M = TypeVar("_M", bound=BaseModel)
_N = TypeVar("_N", CalendarSpec, ChannelSpec, GroupSpec)


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a job file, printed as ``file:line: field: message``."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


class JobFileError(Exception):
    """The job files are invalid; ``problems`` lists every problem found, in file order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


@dataclass(frozen=True)
class SourceLocation:
    """Where a job was defined: its file and the line the job starts on."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class LoadedJobs:
    """Every job of the files, in file order, and where each came from."""

    jobs: list[JobSpec] = field(default_factory=list)
    # Groups that have at least one job in the files: what ``apply --prune`` may prune.
    groups: set[str] = field(default_factory=set)
    sources: dict[JobKey, SourceLocation] = field(default_factory=dict)
    # The files read, as displayed in problems and sources.
    files: list[str] = field(default_factory=list)
    calendars: list[CalendarSpec] = field(default_factory=list)
    calendar_sources: dict[str, SourceLocation] = field(default_factory=dict)
    channels: list[ChannelSpec] = field(default_factory=list)
    # The ``groups:`` section: settings of groups (their alerts), not the jobs' groups.
    alert_groups: list[GroupSpec] = field(default_factory=list)
    # Not errors, but worth saying: calendars named but not defined in these files (the
    # server may have them; apply checks).
    warnings: list[Problem] = field(default_factory=list)

    def source_of(self, job: JobSpec | JobKey) -> SourceLocation:
        return self.sources[job.key if isinstance(job, JobSpec) else job]


def load_job_files(paths: Sequence[Path]) -> LoadedJobs:
    """Load and validate the jobs of ``paths`` (files, or directories searched recursively).

    Raises :class:`JobFileError` with every problem of every file when any is invalid, a
    file is missing or unreadable, or a ``group/name`` is defined twice.
    """
    loader = _Loader()
    for path in paths:
        for display, file in loader.expand(path):
            loader.load_path(display, file)
    return loader.result()


def load_job_text(text: str, file: str = "<string>") -> LoadedJobs:
    """Like :func:`load_job_files` for YAML already in memory; ``file`` names it in problems."""
    loader = _Loader()
    loader.load_text(file, text)
    return loader.result()


def calendars_named(
    jobs: Sequence[JobSpec], calendars: Sequence[CalendarSpec]
) -> list[CalendarSpec]:
    """The calendars of ``calendars`` that ``jobs`` name, with every calendar those
    include or exclude, in the order of ``calendars`` (what an export of the jobs needs)."""
    by_name = {calendar.name: calendar for calendar in calendars}
    pending = [name for job in jobs for name in job.calendars]
    found: set[str] = set()
    while pending:
        name = pending.pop()
        if name not in found and name in by_name:
            found.add(name)
            pending.extend([*by_name[name].include, *by_name[name].exclude])
    return [calendar for calendar in calendars if calendar.name in found]


def dump_job_files(jobs: Sequence[JobSpec], calendars: Sequence[CalendarSpec] = ()) -> str:
    """YAML that :func:`load_job_text` reads back as these jobs and calendars, written as
    ``belfry export`` writes it: defaults left out, each secret as ``{keep: true}``."""
    documents = []
    for job in jobs:
        document = job.to_document()
        documents.append({"name": document.pop("name"), "group": job.group, **document})
    root: dict[str, Any] = {}
    if calendars:
        root["calendars"] = [calendar.to_document() for calendar in calendars]
    if documents or not calendars:
        root["jobs"] = documents
    yaml = YAML()
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump(root, out)
    return out.getvalue()


# --------------------------------------------------------------------------- loading


class _TextTimestamps(RoundTripConstructor):
    """Dates and times stay text for the models to parse: YAML's own parsing raises on
    ``2027-13-01`` before any field (or line) is known, and drops nothing we need."""


_TextTimestamps.add_constructor(
    "tag:yaml.org,2002:timestamp", RoundTripConstructor.construct_yaml_str
)


@dataclass(frozen=True)
class _Reference:
    """A calendar named by a job or another calendar, and where (``where.message`` empty)."""

    name: str
    where: Problem


_CALENDAR_ERROR = re.compile(r"calendars\[([^\]]+)\]\.(\w+): (.*)")


@dataclass
class _Issue:
    """A problem inside one job, before its location is known."""

    loc: tuple[Any, ...]
    message: str
    on_key: bool = False


class _Loader:
    def __init__(self) -> None:
        self._problems: list[Problem] = []
        self._jobs: list[JobSpec] = []
        self._sources: dict[JobKey, SourceLocation] = {}
        self._calendars: list[CalendarSpec] = []
        # Where each calendar, channel and group was defined, by what it is.
        self._named_sources: dict[str, dict[str, SourceLocation]] = {}
        self._channels: list[ChannelSpec] = []
        self._groups: list[GroupSpec] = []
        self._references: list[_Reference] = []
        self._files: list[str] = []
        self._seen: set[Path] = set()
        self._yaml = YAML(typ="rt")
        self._yaml.Constructor = _TextTimestamps

    def result(self) -> LoadedJobs:
        warnings = self._check_references() + self._check_chains()
        if self._problems:
            raise JobFileError(self._problems)
        return LoadedJobs(
            jobs=list(self._jobs),
            groups={job.group for job in self._jobs},
            sources=dict(self._sources),
            files=list(self._files),
            calendars=list(self._calendars),
            calendar_sources=dict(self._calendar_sources),
            channels=list(self._channels),
            alert_groups=list(self._groups),
            warnings=warnings,
        )

    @property
    def _calendar_sources(self) -> dict[str, SourceLocation]:
        return self._named_sources.get("calendar", {})

    def _check_references(self) -> list[Problem]:
        """Warnings for calendars named but not defined here; problems for calendars that
        cannot resolve (cycles) when everything they name is here."""
        warnings = [
            Problem(
                reference.where.file,
                reference.where.line,
                reference.where.field,
                f"calendar '{reference.name}' is not defined in these files "
                "(apply needs it on the server)",
            )
            for reference in self._references
            if reference.name not in self._calendar_sources
        ]
        if warnings or not self._calendars:
            return warnings
        try:
            compile_calendars(self._calendars)
        except CalendarError as error:
            match = _CALENDAR_ERROR.fullmatch(str(error))
            source = self._calendar_sources.get(match.group(1)) if match else None
            if match and source is not None:
                self._problem(
                    source.file,
                    source.line,
                    f"calendars[{match.group(1)}].{match.group(2)}",
                    match.group(3),
                )
            else:
                first = next(iter(self._calendar_sources.values()))
                self._problem(first.file, first.line, "calendars", str(error))
        return warnings

    def _check_chains(self) -> list[Problem]:
        """Problems for jobs that would wait for each other; warnings for jobs run after
        that are not in these files (apply needs them on the server)."""
        keys = {str(job.key) for job in self._jobs}
        edges = {
            str(job.key): job.after.keys(job.group) for job in self._jobs if job.after is not None
        }
        warnings = []
        for job in self._jobs:
            for upstream in edges.get(str(job.key), []):
                if upstream not in keys:
                    where = self._sources[job.key]
                    warnings.append(
                        Problem(
                            where.file,
                            where.line,
                            f"jobs[{job.key}].after",
                            f"job '{upstream}' is not in these files (apply needs it on the "
                            "server)",
                        )
                    )
        cycle = find_cycle(edges)
        if cycle is not None:
            where = self._sources[JobKey.parse(cycle[0])]
            self._problem(
                where.file,
                where.line,
                f"jobs[{cycle[0]}].after",
                "jobs would wait for each other (each runs after the next): " + " -> ".join(cycle),
            )
        return warnings

    # -- finding files

    def expand(self, path: Path) -> list[tuple[str, Path]]:
        """The files ``path`` names, each with the name problems show; a file already
        named by an earlier path is not read again."""
        found: list[tuple[str, Path]] = []
        candidates = self._files_below(path) if path.is_dir() else [(str(path), path)]
        for display, candidate in candidates:
            try:
                identity = candidate.resolve()
            except (OSError, RuntimeError):
                identity = candidate.absolute()
            if identity not in self._seen:
                self._seen.add(identity)
                found.append((display, candidate))
        return found

    def _files_below(self, directory: Path) -> list[tuple[str, Path]]:
        files: list[Path] = []

        def unreadable(error: OSError) -> None:
            where = error.filename or directory
            self._problem(str(where), 1, "file", f"cannot read directory: {_reason(error)}")

        for root, dirnames, filenames in os.walk(directory, onerror=unreadable):
            dirnames[:] = [name for name in dirnames if not name.startswith(".")]
            files.extend(
                Path(root, name)
                for name in filenames
                if name.endswith(YAML_SUFFIXES) and not name.startswith(".")
            )
        files.sort(key=lambda path: path.relative_to(directory).as_posix())
        if not files:
            self._problem(str(directory), 1, "file", "no .yaml or .yml files in this directory")
        return [(str(path), path) for path in files]

    # -- reading one file

    def load_path(self, display: str, path: Path) -> None:
        try:
            if not path.exists():
                self._problem(display, 1, "file", "file not found")
                return
            if not path.is_file():
                self._problem(display, 1, "file", "not a regular file")
                return
            if path.stat().st_size > MAX_FILE_BYTES:
                self._problem(display, 1, "file", _too_large())
                return
            with path.open("rb") as stream:
                data = stream.read(MAX_FILE_BYTES + 1)
        except OSError as error:
            self._problem(display, 1, "file", f"cannot read the file: {_reason(error)}")
            return
        if len(data) > MAX_FILE_BYTES:  # it grew since stat()
            self._problem(display, 1, "file", _too_large())
            return
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            line = data[: error.start].count(b"\n") + 1
            self._problem(display, line, "file", "not UTF-8 text")
            return
        self.load_text(display, text)

    def load_text(self, file: str, text: str) -> None:
        self._files.append(file)
        before = len(self._problems)
        try:
            self._load_document(file, text)
        except RecursionError:
            self._problem(file, 1, "yaml", "the document is nested too deeply")
        # Within a file, problems in line order (several jobs may share a merged block).
        self._problems[before:] = sorted(self._problems[before:], key=lambda p: p.line)

    def _load_document(self, file: str, text: str) -> None:
        try:
            root = self._yaml.load(text)
        except YAMLError as error:
            self._problem(file, *_yaml_error(error))
            return
        if root is None:
            return  # an empty file (or only comments): no jobs
        if not isinstance(root, dict):
            hint = " (put the jobs under a top-level 'jobs:' key)" if isinstance(root, list) else ""
            self._problem(
                file,
                _node_line(root),
                "file",
                f"expected a mapping with a 'jobs' list at the top level, got "
                f"{_describe(_plain(root, {}))}{hint}",
            )
            return
        for key in root:
            if key in _SECTIONS:
                continue
            line = _key_line(root, key, 1)
            if key in _PLANNED_SECTIONS:
                self._problem(file, line, key, f"not supported yet: {_PLANNED_SECTIONS[key]}")
            else:
                hint = _did_you_mean(key, _KNOWN_SECTIONS) or " (a job file holds a 'jobs:' list)"
                self._problem(file, line, _key_text(key), f"unknown top-level key{hint}")
        for section, what in _SECTIONS.items():
            items = root.get(section)
            if items is None:
                continue  # "jobs:" with every job commented out
            if not isinstance(items, list):
                hint = f" (start each {what} with '- ')" if isinstance(items, dict) else ""
                self._problem(
                    file,
                    _value_line(root, section, 1),
                    section,
                    f"expected a list of {section}, got {_describe(_plain(items, {}))}{hint}",
                )
                continue
            for index, node in enumerate(items):
                if section == "jobs":
                    self._load_job(file, items, index, node)
                elif section == "calendars":
                    self._load_calendar(file, items, index, node)
                else:
                    self._load_alerting(section, file, items, index, node)

    def _load_alerting(self, section: str, file: str, items: Any, index: int, node: Any) -> None:
        prefix = f"{section}[{index}]"
        line = _item_line(items, index, _node_line(items))
        if section == "channels":
            channel = self._load_named(ChannelSpec, file, "channel", prefix, line, node)
            if channel is not None:
                self._channels.append(channel)
        else:
            group = self._load_named(GroupSpec, file, "group", prefix, line, node)
            if group is not None:
                self._groups.append(group)

    def _load_job(self, file: str, jobs: Any, index: int, node: Any) -> None:
        prefix = f"jobs[{index}]"
        job_line = _item_line(jobs, index, _node_line(jobs))
        spec = self._load_item(
            JobSpec,
            file,
            node,
            prefix,
            job_line,
            "a job (a mapping with name, schedule and command)",
        )
        if spec is None:
            return
        stored_forms = secret_input_problems(spec.env)
        for name, message in stored_forms:
            path, line = _locate(node, prefix, job_line, ("env", name), on_key=False)
            self._problem(file, line, path, message)
        if stored_forms:
            return
        location = SourceLocation(file, job_line)
        first = self._sources.get(spec.key)
        if first is not None:
            # An aliased job (``- *other``) has the lines of its anchor: use the item's.
            self._problem(
                file,
                max(_key_line(node, "name", job_line), job_line),
                f"{prefix}.name",
                f"duplicate job '{spec.key}': also defined at {first}",
            )
            return
        self._sources[spec.key] = location
        self._jobs.append(spec)
        for field_name in ("exclude", "only"):
            for position, name in enumerate(getattr(spec, field_name)):
                path, line = _locate(node, prefix, job_line, (field_name, position), on_key=False)
                self._references.append(_Reference(name, Problem(file, line, path, "")))

    def _load_calendar(self, file: str, calendars: Any, index: int, node: Any) -> None:
        prefix = f"calendars[{index}]"
        line = _item_line(calendars, index, _node_line(calendars))
        spec = self._load_named(CalendarSpec, file, "calendar", prefix, line, node)
        if spec is None:
            return
        self._calendars.append(spec)
        for field_name in ("include", "exclude"):
            for position, name in enumerate(getattr(spec, field_name)):
                path, at = _locate(node, prefix, line, (field_name, position), on_key=False)
                self._references.append(_Reference(name, Problem(file, at, path, "")))

    def _load_named(
        self, model: type[_N], file: str, what: str, prefix: str, line: int, node: Any
    ) -> _N | None:
        """A calendar, channel or group: valid, and the first of its name in the files."""
        spec = self._load_item(model, file, node, prefix, line, f"a {what} (a mapping with a name)")
        if spec is None:
            return None
        sources = self._named_sources.setdefault(what, {})
        first = sources.get(spec.name)
        if first is not None:
            self._problem(
                file,
                max(_key_line(node, "name", line), line),
                f"{prefix}.name",
                f"duplicate {what} '{spec.name}': also defined at {first}",
            )
            return None
        sources[spec.name] = SourceLocation(file, line)
        return spec

    def _load_item(
        self, model: type[_M], file: str, node: Any, prefix: str, line: int, expected: str
    ) -> _M | None:
        if not isinstance(node, dict):
            self._problem(
                file, line, prefix, f"expected {expected}, got {_describe(_plain(node, {}))}"
            )
            return None
        spec, issues = _validate(model, _plain(node, {}))
        for issue in issues:
            path, at = _locate(node, prefix, line, issue.loc, on_key=issue.on_key)
            self._problem(file, at, path, issue.message)
        return spec

    def _problem(self, file: str, line: int, where: str, message: str) -> None:
        self._problems.append(Problem(file, line, where, message))


# --------------------------------------------------------------------------- validation


def _validate(model: type[_M], data: dict[Any, Any]) -> tuple[_M | None, list[_Issue]]:
    """The job (or calendar), or None and why not."""
    cleaned, issues = _precheck(model, data, ())
    try:
        spec = model.model_validate(cleaned)
    except ValidationError as error:
        return None, issues + _from_pydantic(model, error, cleaned)
    except Exception:  # a validator that crashed must not become a traceback
        return None, issues + _crashed_fields(model, cleaned)
    return (spec, []) if not issues else (None, issues)


def _precheck(
    model: type[BaseModel], data: dict[Any, Any], loc: tuple[Any, ...]
) -> tuple[dict[Any, Any], list[_Issue]]:
    """Catch what pydantic would accept or crash on: booleans given as numbers and values
    that are not durations. Returns a copy of ``data`` without the offending keys."""
    cleaned = dict(data)
    issues: list[_Issue] = []
    for name, info in model.model_fields.items():
        if name not in data:
            continue
        value = data[name]
        kind, optional = _strip_optional(info.annotation)
        here = (*loc, name)
        if value is None and optional:
            continue
        if kind is timedelta:
            message = _duration_problem(value)
            if message is not None:
                issues.append(_Issue(here, message))
                del cleaned[name]
        elif kind in (int, float) and isinstance(value, bool):
            issues.append(_Issue(here, _type_message(_number_kind(kind), value)))
            del cleaned[name]
        elif get_origin(kind) is list and isinstance(value, list):
            (item_kind,) = get_args(kind) or (Any,)
            if item_kind in (int, float):
                bad = [i for i, item in enumerate(value) if isinstance(item, bool)]
                for i in bad:
                    message = _type_message(_number_kind(item_kind), value[i])
                    issues.append(_Issue((*here, i), message))
                if bad:
                    del cleaned[name]
        elif isinstance(kind, type) and issubclass(kind, BaseModel) and isinstance(value, dict):
            cleaned[name], inner = _precheck(kind, value, here)
            issues.extend(inner)
    return cleaned, issues


def _duration_problem(value: Any) -> str | None:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        try:
            parse_duration(value)
        except ValueError as error:
            return str(error)
        except OverflowError:
            return f"duration is too large: {_short(value)}"
        return None
    return (
        "expected a duration such as 90s, 5m or 1h30m (or a number of seconds), got "
        + _describe(value)
    )


def _crashed_fields(model: type[BaseModel], data: dict[Any, Any]) -> list[_Issue]:
    """Validation raised something other than a validation error: find the field(s)."""
    issues = []
    for key, value in data.items():
        try:
            model.model_validate({**_PROBES[model], key: value})
        except ValidationError:
            continue
        except OverflowError:
            issues.append(_Issue((key,), f"a number is too large in {_short(value)!r}"))
        except Exception as error:  # reported, never raised
            issues.append(_Issue((key,), f"cannot check this value: {error}"))
    return issues or [_Issue((), "this job cannot be checked (internal error)")]


def _from_pydantic(
    model: type[BaseModel], error: ValidationError, data: dict[Any, Any]
) -> list[_Issue]:
    """Pydantic's errors as issues: union branches folded, messages in YAML terms."""
    plain: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    unions: dict[tuple[Any, ...], list[tuple[tuple[Any, ...], dict[str, Any]]]] = {}
    for error_details in error.errors(include_url=False):
        details: dict[str, Any] = dict(error_details)
        loc, union_at = _strip_union_tags(tuple(details["loc"]), data, details["type"])
        if not loc:
            loc, details = _model_error_field(model, details)
        if union_at is None:
            plain.append((loc, details))
        else:
            unions.setdefault(loc[:union_at], []).append((loc, details))

    issues = [_issue(model, loc, details) for loc, details in plain]
    for base, branches in unions.items():
        deep = [(loc, details) for loc, details in branches if len(loc) > len(base)]
        if deep:
            # The value had the shape of one branch (a list): only its errors matter.
            issues.extend(_issue(model, loc, details) for loc, details in deep)
            continue
        expected = [_EXPECTED.get(details["type"]) for _, details in branches]
        if all(expected):
            kinds = " or ".join(dict.fromkeys(str(kind) for kind in expected))
            got = _describe(branches[0][1].get("input"))
            issues.append(_Issue(base, f"expected {kinds}, got {got}"))
        else:
            issues.extend(_issue(model, base, details) for _, details in branches)
    return issues


def _issue(model: type[BaseModel], loc: tuple[Any, ...], details: dict[str, Any]) -> _Issue:
    kind = details["type"]
    on_key = kind in _KEY_ERRORS or (bool(loc) and loc[-1] == "[key]")
    if loc and loc[-1] == "[key]":
        loc = loc[:-1]
    return _Issue(loc, _message(model, loc, details), on_key=on_key)


def _message(model: type[BaseModel], loc: tuple[Any, ...], details: dict[str, Any]) -> str:
    kind = details["type"]
    value = details.get("input")
    context = details.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown field" + _did_you_mean(loc[-1], _fields_at(model, loc[:-1]))
    if kind == "missing":
        return "required field is missing"
    if kind == "invalid_key":
        return f"keys must be strings, got {_describe(value)}"
    if kind in _EXPECTED:
        return _type_message(_EXPECTED[kind], value)
    if kind in ("enum", "literal_error") and "expected" in context:
        return f"expected one of {context['expected']}, got {_describe(value)}"
    message = str(details.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    if message.startswith("Input should be "):
        return f"must be {message[len('Input should be ') :]}, got {_describe(value)}"
    return message


def _type_message(expected: str, value: Any) -> str:
    message = f"expected {expected}, got {_describe(value)}"
    if expected == "a string" and _is_scalar(value) and value is not None:
        message += f'; quote it if you mean the text "{_yaml_text(value)}"'
    return message


def _model_error_field(
    model: type[BaseModel], details: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A whole-model error whose message starts with ``field:`` is about that field."""
    message = _message(model, (), details)
    name, colon, rest = message.partition(": ")
    if colon and name in _fields_at(model, ()):
        return (name,), {**details, "type": "value_error", "msg": rest}
    return (), {**details, "type": "value_error", "msg": message}


def _strip_union_tags(
    loc: tuple[Any, ...], data: Any, kind: str
) -> tuple[tuple[Any, ...], int | None]:
    """Drop pydantic's union branch names (``str``, ``list[str]``) from ``loc``; return the
    cleaned loc and the index the first branch name had, if any."""
    cleaned: list[Any] = []
    node = data
    union_at: int | None = None
    for position, part in enumerate(loc):
        last = position == len(loc) - 1
        if _has_child(node, part):
            node = node[part]
        elif part == "[key]" or (last and kind == "missing" and isinstance(node, dict)):
            node = None
        else:
            if union_at is None:
                union_at = len(cleaned)
            continue
        cleaned.append(part)
    return tuple(cleaned), union_at


# --------------------------------------------------------------------------- locations


def _locate(
    node: Any, prefix: str, job_line: int, loc: tuple[Any, ...], *, on_key: bool
) -> tuple[str, int]:
    """The readable field path of ``loc`` and the line to report it on."""
    path = prefix
    key_line = value_line = job_line
    for part in loc:
        if isinstance(node, dict) and _has_key(node, part):
            key_line = _key_line(node, part, value_line)
            node, value_line = node[part], _value_line(node, part, key_line)
            if node is None or isinstance(node, dict | list):
                # An empty value has no line of its own; a block collection's line is its
                # first item's, but the key says better what is wrong.
                value_line = key_line
            path += _path_part(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            key_line = value_line = _item_line(node, part, value_line)
            node = node[part]
            path += f"[{part}]"
        else:
            # A missing key: report it on the line of the mapping that lacks it.
            path += _path_part(part)
            return path, key_line
    return path, key_line if on_key else value_line


def _path_part(part: Any) -> str:
    if isinstance(part, str) and _IDENTIFIER.match(part):
        return f".{part}"
    if isinstance(part, str):
        return '["' + part.replace("\\", "\\\\").replace('"', '\\"') + '"]'
    return f"[{part!r}]"


def _positions(node: Any, key: Any, depth: int = 0) -> tuple[int, int] | None:
    """0-based (key line, value line) of ``key``, looking into ``<<:`` merged mappings."""
    try:
        key_line = node.lc.key(key)[0]
        value_line = node.lc.value(key)[0]
    except (AttributeError, KeyError, TypeError, IndexError):
        pass
    else:
        return int(key_line), int(value_line)
    if depth < 20:
        for source in getattr(node, "merge", None) or ():
            merged = source[1] if isinstance(source, tuple) else source
            if isinstance(merged, dict) and _has_key(merged, key):
                found = _positions(merged, key, depth + 1)
                if found is not None:
                    return found
    return None


def _key_line(node: Any, key: Any, default: int) -> int:
    found = _positions(node, key)
    return found[0] + 1 if found else default


def _value_line(node: Any, key: Any, default: int) -> int:
    found = _positions(node, key)
    return found[1] + 1 if found else default


def _item_line(node: Any, index: int, default: int) -> int:
    try:
        return int(node.lc.item(index)[0]) + 1
    except (AttributeError, KeyError, TypeError, IndexError):
        return default


def _node_line(node: Any) -> int:
    try:
        return int(node.lc.line) + 1
    except (AttributeError, TypeError):
        return 1


def _yaml_error(error: YAMLError) -> tuple[int, str, str]:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    line = int(mark.line) + 1 if mark is not None else 1
    problem = getattr(error, "problem", None)
    context = getattr(error, "context", None)
    if problem is None:
        message = str(error).strip().splitlines()[0] if str(error).strip() else "invalid YAML"
    else:
        message = f"{context}, {problem}" if context else str(problem)
    if "'\\t'" in message:
        message += " (indent with spaces, not tabs)"
    return line, "yaml", message


# --------------------------------------------------------------------------- values


def _plain(node: Any, memo: dict[int, Any]) -> Any:
    """ruamel's round-trip nodes as plain dict / list / str / int / float / bool.

    Aliases stay shared (``memo``), so a YAML "billion laughs" costs nothing here.
    """
    if id(node) in memo:
        return memo[id(node)]
    if isinstance(node, dict):
        mapping: dict[Any, Any] = {}
        memo[id(node)] = mapping
        for key, value in node.items():
            mapping[_plain_key(key)] = _plain(value, memo)
        return mapping
    if isinstance(node, list):
        sequence: list[Any] = []
        memo[id(node)] = sequence
        sequence.extend(_plain(item, memo) for item in node)
        return sequence
    return _plain_scalar(node)


def _plain_key(key: Any) -> Any:
    if isinstance(key, str | int | float | bool) or key is None:
        return _plain_scalar(key)
    return str(key)  # a complex key (a sequence or mapping): never a valid field


def _plain_scalar(value: Any) -> Any:
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, datetime):
        return datetime.fromisoformat(value.isoformat())
    return value


def _has_child(node: Any, part: Any) -> bool:
    if isinstance(node, dict):
        return _has_key(node, part)
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _has_key(mapping: dict[Any, Any], key: Any) -> bool:
    try:
        return key in mapping
    except TypeError:
        return False


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({_yaml_text(value)})"
    if isinstance(value, int | float):
        return f"a number ({_yaml_text(value)})"
    if isinstance(value, datetime):
        return f"a timestamp ({_yaml_text(value)})"
    if isinstance(value, date):
        return f"a date ({_yaml_text(value)})"
    if isinstance(value, str):
        return f"a string ({_short(value)!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    tag = getattr(value, "tag", None)
    if tag is not None:
        return f"a value tagged {tag}"  # an unknown YAML tag, e.g. "!env HOME"
    return f"a {type(value).__name__}"


def _yaml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return _short(value)


def _short(value: Any, limit: int = 60) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | date)


def _number_kind(kind: Any) -> str:
    return "an integer" if kind is int else "a number"


def _too_large() -> str:
    mebibytes, rest = divmod(MAX_FILE_BYTES, 1024 * 1024)
    limit = f"{mebibytes} MiB" if not rest else f"{MAX_FILE_BYTES} bytes"
    return f"file is larger than {limit}; split it into several"


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def _key_text(key: Any) -> str:
    return key if isinstance(key, str) else _yaml_text(key)


def _did_you_mean(key: Any, candidates: Iterable[str]) -> str:
    if not isinstance(key, str):
        return ""
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# --------------------------------------------------------------------------- model shapes


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); ``Annotated[X, ...]`` -> X."""
    optional = False
    if get_origin(annotation) in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        optional = len(members) < len(get_args(annotation))
        if len(members) != 1:
            return annotation, optional
        annotation = members[0]
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation, optional


def _field_named(model: type[BaseModel], key: Any) -> Any:
    """The annotation of the field users write as ``key`` (its alias, if it has one)."""
    for name, info in model.model_fields.items():
        if key == (info.alias or name):
            return info.annotation
    return None


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    parts = list(loc)
    while parts:
        annotation = _field_named(model, parts.pop(0))
        if annotation is None:
            return None
        kind, _ = _strip_optional(annotation)
        if get_origin(kind) is list and parts and isinstance(parts[0], int):
            parts.pop(0)  # an item of a list of mappings, such as a calendar's ranges
            (kind,) = get_args(kind) or (Any,)
        if not (isinstance(kind, type) and issubclass(kind, BaseModel)):
            return None
        model = kind
    return model


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys users may write at ``loc`` (aliases where fields have them)."""
    found = _model_at(model, loc)
    if found is None:
        return []
    return [info.alias or name for name, info in found.model_fields.items()]
