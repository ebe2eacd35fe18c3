"""The jobs-as-code loader: what ``belfry validate`` prints and ``belfry apply`` sends."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from job_file_helpers import problems, write

from belfry.core.durations import parse_duration
from belfry.core.jobs import JobKey, JobSpec, OverlapPolicy
from belfry.core.schedules import parse_schedule, parse_timezone
from belfry.services import job_files
from belfry.services.job_files import (
    MAX_FILE_BYTES,
    JobFileError,
    LoadedJobs,
    Problem,
    SourceLocation,
    load_job_files,
    load_job_text,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "jobs.yaml"


def core_error(check: Callable[[str], object], value: str) -> str:
    """The core's own message for a bad value (the loader shows it as is)."""
    with pytest.raises(ValueError) as caught:
        check(value)
    return str(caught.value)


# --------------------------------------------------------------------------- valid files


def test_loads_jobs_with_groups_and_sources(tmp_path: Path) -> None:
    write(
        tmp_path,
        "jobs.yaml",
        """
        # billing jobs
        jobs:
          - name: nightly-invoices
            group: billing
            schedule: "30 2 * * *"
            timezone: Europe/Berlin
            command: ./bin/invoices --nightly
            timeout: 30m
            overlap: forbid
            retries: {max: 3, backoff: 30s}

          - name: heartbeat
            schedule: every 10s
            command: [echo, hi]
        """,
    )
    loaded = load_job_files([Path("jobs.yaml")])

    assert [str(job.key) for job in loaded.jobs] == [
        "billing/nightly-invoices",
        "default/heartbeat",
    ]
    assert loaded.groups == {"billing", "default"}
    assert loaded.files == ["jobs.yaml"]
    invoices, heartbeat = loaded.jobs
    assert invoices.timeout == timedelta(minutes=30)
    assert invoices.overlap is OverlapPolicy.FORBID
    assert invoices.retries.max == 3
    assert heartbeat.command == ["echo", "hi"]
    assert loaded.source_of(invoices) == SourceLocation("jobs.yaml", 3)
    assert str(loaded.source_of(JobKey(group="default", name="heartbeat"))) == "jobs.yaml:12"


def test_values_are_plain_python_types(tmp_path: Path) -> None:
    write(
        tmp_path,
        "jobs.yaml",
        """
        jobs:
          - name: a
            schedule: every 1m
            command: |
              echo one
              echo two
            env: {A: "1"}
            tags: {region: eu}
        """,
    )
    (job,) = load_job_files([Path("jobs.yaml")]).jobs
    assert type(job.command) is str
    assert job.command == "echo one\necho two"  # JobSpec strips surrounding whitespace
    assert type(job.env) is dict
    assert all(type(key) is str and type(value) is str for key, value in job.tags.items())


def test_durations_may_be_numbers_of_seconds(tmp_path: Path) -> None:
    write(
        tmp_path,
        "jobs.yaml",
        """
        jobs:
          - name: a
            schedule: every 1m
            command: "true"
            timeout: 90
            starting_deadline: 1.5
            retries: {max: 1, backoff: 5}
        """,
    )
    (job,) = load_job_files([Path("jobs.yaml")]).jobs
    assert job.timeout == timedelta(seconds=90)
    assert job.starting_deadline == timedelta(seconds=1.5)
    assert job.retries.backoff == timedelta(seconds=5)


@pytest.mark.parametrize(
    "text",
    ["", "# only a comment\n", "jobs:\n", "jobs: []\n", "jobs:\n  # - name: later\n"],
    ids=["empty", "comment", "null-jobs", "empty-list", "commented-out"],
)
def test_a_file_without_jobs_is_fine(tmp_path: Path, text: str) -> None:
    (tmp_path / "jobs.yaml").write_text(text)
    loaded = load_job_files([Path("jobs.yaml")])
    assert loaded == LoadedJobs(files=["jobs.yaml"])


def test_directory_is_searched_recursively_in_sorted_order(tmp_path: Path) -> None:
    job = "jobs:\n  - {{name: {name}, group: {group}, schedule: every 1m, command: 'true'}}\n"
    write(tmp_path, "conf/b.yaml", job.format(name="b", group="two"))
    write(tmp_path, "conf/a.yml", job.format(name="a", group="one"))
    write(tmp_path, "conf/sub/c.yaml", job.format(name="c", group="one"))
    write(tmp_path, "conf/a/z.yaml", job.format(name="z", group="one"))
    write(tmp_path, "conf/notes.txt", "not yaml: [")
    write(tmp_path, "conf/.hidden.yaml", "not yaml: [")
    write(tmp_path, "conf/.git/x.yaml", "not yaml: [")

    loaded = load_job_files([Path("conf")])

    assert loaded.files == ["conf/a.yml", "conf/a/z.yaml", "conf/b.yaml", "conf/sub/c.yaml"]
    assert [job.name for job in loaded.jobs] == ["a", "z", "b", "c"]
    assert loaded.groups == {"one", "two"}
    assert str(loaded.source_of(JobKey(group="one", name="c"))) == "conf/sub/c.yaml:2"


def test_a_file_named_twice_is_read_once(tmp_path: Path) -> None:
    write(tmp_path, "d/jobs.yaml", "jobs: [{name: a, schedule: every 1m, command: x}]\n")
    loaded = load_job_files([Path("d"), Path("d/jobs.yaml"), Path("d/../d/jobs.yaml")])
    assert loaded.files == ["d/jobs.yaml"]
    assert len(loaded.jobs) == 1


def test_merge_keys_are_supported(tmp_path: Path) -> None:
    write(
        tmp_path,
        "jobs.yaml",
        """
        jobs:
          - &base
            name: first
            schedule: every 5m
            command: echo first
            timeout: 1m
          - <<: *base
            name: second
        """,
    )
    first, second = load_job_files([Path("jobs.yaml")]).jobs
    assert second.name == "second"
    assert second.timeout == first.timeout == timedelta(minutes=1)


def test_load_job_text() -> None:
    loaded = load_job_text("jobs:\n- {name: a, schedule: every 1m, command: x}\n", "api")
    assert str(loaded.source_of(loaded.jobs[0])) == "api:2"
    with pytest.raises(JobFileError) as caught:
        load_job_text("jobs: 5\n", "api")
    assert str(caught.value) == "api:1: jobs: expected a list of jobs, got a number (5)"


# --------------------------------------------------------------------------- file problems


def test_yaml_syntax_error_has_the_parser_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        "jobs.yaml",
        """
        jobs:
          - name: a
            schedule: "every 1m
            command: x
        """,
    )
    assert problems(Path("jobs.yaml")) == [
        "jobs.yaml:5: yaml: while scanning a quoted scalar, found unexpected end of stream"
    ]


def test_yaml_syntax_error_mapping_values(tmp_path: Path) -> None:
    write(tmp_path, "jobs.yaml", "jobs:\n  - name: a\n    schedule: a: b\n")
    assert problems(Path("jobs.yaml")) == ["jobs.yaml:3: yaml: mapping values are not allowed here"]


def test_yaml_duplicate_key_and_tabs(tmp_path: Path) -> None:
    write(tmp_path, "dup.yaml", "jobs:\n  - name: a\n    name: b\n")
    write(tmp_path, "tab.yaml", "jobs:\n\t- name: a\n")
    assert problems(Path("dup.yaml"), Path("tab.yaml")) == [
        'dup.yaml:3: yaml: while constructing a mapping, found duplicate key "name" with '
        'value "b" (original value: "a")',
        "tab.yaml:2: yaml: while scanning for the next token, found character '\\t' that "
        "cannot start any token (indent with spaces, not tabs)",
    ]


def test_file_level_problems(tmp_path: Path) -> None:
    write(tmp_path, "list.yaml", "- name: a\n  schedule: every 1m\n")
    write(tmp_path, "scalar.yaml", "hello\n")
    write(tmp_path, "jobs-map.yaml", "# one job\njobs:\n  name: a\n  schedule: every 1m\n")
    write(tmp_path, "jobs-str.yaml", "jobs: all of them\n")
    (tmp_path / "empty-dir").mkdir()
    (tmp_path / "latin1.yaml").write_bytes(b"jobs:\n  - name: caf\xe9\n")

    assert problems(
        Path("list.yaml"),
        Path("scalar.yaml"),
        Path("jobs-map.yaml"),
        Path("jobs-str.yaml"),
        Path("missing.yaml"),
        Path("empty-dir"),
        Path("latin1.yaml"),
    ) == [
        "list.yaml:1: file: expected a mapping with a 'jobs' list at the top level, got a "
        "list (put the jobs under a top-level 'jobs:' key)",
        "scalar.yaml:1: file: expected a mapping with a 'jobs' list at the top level, got a "
        "string ('hello')",
        "jobs-map.yaml:3: jobs: expected a list of jobs, got a mapping (start each job with '- ')",
        "jobs-str.yaml:1: jobs: expected a list of jobs, got a string ('all of them')",
        "missing.yaml:1: file: file not found",
        "empty-dir:1: file: no .yaml or .yml files in this directory",
        "latin1.yaml:2: file: not UTF-8 text",
    ]


def test_unreadable_file_is_a_problem_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "secret.yaml", "jobs: []\n")
    original = Path.open

    def deny(self: Path, *args: object, **kwargs: object) -> object:
        if self.name == "secret.yaml":
            raise PermissionError(13, "Permission denied", str(self))
        return original(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", deny)
    assert problems(Path("secret.yaml")) == [
        "secret.yaml:1: file: cannot read the file: Permission denied"
    ]


def test_files_larger_than_5_mib_are_refused(tmp_path: Path) -> None:
    assert MAX_FILE_BYTES == 5 * 1024 * 1024
    (tmp_path / "big.yaml").write_bytes(b"jobs: []\n" + b"#" * MAX_FILE_BYTES)
    assert problems(Path("big.yaml")) == [
        "big.yaml:1: file: file is larger than 5 MiB; split it into several"
    ]


def test_the_size_limit_is_inclusive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A smaller limit: parsing 5 MiB of YAML would make the test slow.
    monkeypatch.setattr(job_files, "MAX_FILE_BYTES", 64)
    (tmp_path / "fits.yaml").write_bytes(b"jobs: []\n#".ljust(64, b"#"))
    (tmp_path / "over.yaml").write_bytes(b"jobs: []\n#".ljust(65, b"#"))
    assert load_job_files([Path("fits.yaml")]).jobs == []
    assert problems(Path("over.yaml")) == [
        "over.yaml:1: file: file is larger than 64 bytes; split it into several"
    ]


def test_unknown_top_level_keys(tmp_path: Path) -> None:
    write(
        tmp_path,
        "jobs.yaml",
        """
        jobs: []
        channels:
          - name: oncall
            apprise: "slack://a/b/c"
        calendars:
          - name: holidays
            dates: [2027-12-24]
        job:
          - name: a
        defaults: {}
        """,
    )
    assert problems(Path("jobs.yaml")) == [
        "jobs.yaml:8: job: unknown top-level key (did you mean 'jobs'?)",
        "jobs.yaml:10: defaults: unknown top-level key (a job file holds a 'jobs:' list)",
    ]


# --------------------------------------------------------------------------- job problems


def test_a_job_that_is_not_a_mapping(tmp_path: Path) -> None:
    write(
        tmp_path,
        "jobs.yaml",
        """
        jobs:
          - name: ok
            schedule: every 1m
            command: x
          - echo hello
          -
          - [a, b]
        """,
    )
    assert problems(Path("jobs.yaml")) == [
        "jobs.yaml:5: jobs[1]: expected a job (a mapping with name, schedule and command), "
        "got a string ('echo hello')",
        "jobs.yaml:6: jobs[2]: expected a job (a mapping with name, schedule and command), "
        "got nothing (null)",
        "jobs.yaml:7: jobs[3]: expected a job (a mapping with name, schedule and command), "
        "got a list",
    ]


def test_unknown_keys_are_reported_on_their_own_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        "jobs.yaml",
        """
        jobs:
          - name: a
            schedule: every 1m
            command: x
            tz: UTC
            retries:
              max: 1
              backof: 5s
            resources: {cpu: 1, mem: 1Gi}
        """,
    )
    assert problems(Path("jobs.yaml")) == [
        "jobs.yaml:5: jobs[0].tz: unknown field",
        "jobs.yaml:8: jobs[0].retries.backof: unknown field (did you mean 'backoff'?)",
        "jobs.yaml:9: jobs[0].resources.mem: unknown field (did you mean 'memory'?)",
    ]


def test_bad_values_are_reported_on_the_value_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        "jobs.yaml",
        """
        jobs:
          - name: ok
            schedule: every 1m
            command: x
          - name: bad
            schedule: "61 * * * *"
            timezone: Mars/Base
            command: x
            timeout: soon
            overlap: sometimes
            target: every
            queue_max: 0
            retries:
              max: -1
            failure_pattern: "(unclosed"
            env:
              "NOT VALID": x
        """,
    )
    assert problems(Path("jobs.yaml")) == [
        "jobs.yaml:6: jobs[1].schedule: " + core_error(parse_schedule, "61 * * * *"),
        "jobs.yaml:7: jobs[1].timezone: " + core_error(parse_timezone, "Mars/Base"),
        "jobs.yaml:9: jobs[1].timeout: " + core_error(parse_duration, "soon"),
        "jobs.yaml:10: jobs[1].overlap: expected one of 'allow', 'forbid', 'replace' or "
        "'queue', got a string ('sometimes')",
        "jobs.yaml:11: jobs[1].target: expected one of 'any' or 'all', got a string ('every')",
        "jobs.yaml:12: jobs[1].queue_max: must be greater than or equal to 1, got a number (0)",
        "jobs.yaml:14: jobs[1].retries.max: must be greater than or equal to 0, got a number (-1)",
        "jobs.yaml:15: jobs[1].failure_pattern: not a valid regular expression: missing ), "
        "unterminated subpattern at position 0",
        "jobs.yaml:16: jobs[1].env: 'NOT VALID' is not a valid environment variable name",
    ]


def test_non_strings_where_strings_are_expected(tmp_path: Path) -> None:
    write(
        tmp_path,
        "jobs.yaml",
        """
        jobs:
          - name: 2024
            schedule: 5
            command: true
            timezone: 2027-01-01
            tags: {region: 1, 7: x}
            notify: [oncall, 3]
            description:
        """,
    )
    assert problems(Path("jobs.yaml")) == [
        "jobs.yaml:2: jobs[0].name: expected a string, got a number (2024); quote it if you "
        'mean the text "2024"',
        "jobs.yaml:3: jobs[0].schedule: expected a string or a list, got a number (5)",
        "jobs.yaml:4: jobs[0].command: expected a string or a list, got a boolean (true)",
        # Dates stay text (the models parse them), so this is simply not a zone.
        "jobs.yaml:5: jobs[0].timezone: unknown time zone '2027-01-01' (use an IANA name such "
        "as Europe/Berlin or UTC)",
        "jobs.yaml:6: jobs[0].tags.region: expected a string, got a number (1); quote it if "
        'you mean the text "1"',
        "jobs.yaml:6: jobs[0].tags[7]: expected a string, got a number (7); quote it if you "
        'mean the text "7"',
        "jobs.yaml:7: jobs[0].notify[1]: expected a string, got a number (3); quote it if you "
        'mean the text "3"',
        "jobs.yaml:8: jobs[0].description: expected a string, got nothing (null)",
    ]


def test_booleans_and_lists_where_numbers_or_durations_are_expected(tmp_path: Path) -> None:
    try:
        parse_duration("99999999999d")
    except ValueError as error:
        too_large = str(error)
    except OverflowError:  # the loader words it itself when the core cannot
        too_large = "duration is too large: 99999999999d"
    write(
        tmp_path,
        "jobs.yaml",
        """
        jobs:
          - name: a
            schedule: every 1m
            command: [echo, 1]
            retries: {max: true, backoff: [1]}
            success_exit_codes: [0, false]
            kill_grace:
            timeout: 99999999999d
            misfire_max: 1.5
        """,
    )
    assert problems(Path("jobs.yaml")) == [
        "jobs.yaml:4: jobs[0].command[1]: expected a string, got a number (1); quote it if "
        'you mean the text "1"',
        "jobs.yaml:5: jobs[0].retries.max: expected an integer, got a boolean (true)",
        "jobs.yaml:5: jobs[0].retries.backoff: expected a duration such as 90s, 5m or 1h30m "
        "(or a number of seconds), got a list",
        "jobs.yaml:6: jobs[0].success_exit_codes[1]: expected an integer, got a boolean (false)",
        "jobs.yaml:7: jobs[0].kill_grace: expected a duration such as 90s, 5m or 1h30m (or a "
        "number of seconds), got nothing (null)",
        "jobs.yaml:8: jobs[0].timeout: " + too_large,
        "jobs.yaml:9: jobs[0].misfire_max: expected a whole number, got a number (1.5)",
    ]


def test_missing_fields_are_reported_on_the_job_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        "jobs.yaml",
        """
        jobs:
          - name: ok
            schedule: every 1m
            command: x

          - description: nothing else
          - name: no-command
            schedule: every 1m
          - name: no-schedule
            command:
        """,
    )
    assert problems(Path("jobs.yaml")) == [
        "jobs.yaml:6: jobs[1].name: required field is missing",
        "jobs.yaml:7: jobs[2].command: a job needs exactly one of 'command' or 'http'",
        # A schedule is needed unless the job runs after others (told once the rest is).
        "jobs.yaml:9: jobs[3].schedule: a job needs a schedule, or after: to run after other jobs",
    ]


def test_model_level_error_points_at_the_field(tmp_path: Path) -> None:
    write(
        tmp_path,
        "jobs.yaml",
        """
        jobs:
          - name: a
            schedule: every 1m
            command: "true"
            start: 2027-02-01T00:00:00Z
            end: 2027-01-01T00:00:00Z
        """,
    )
    assert problems(Path("jobs.yaml")) == [
        "jobs.yaml:6: jobs[0].end: 2027-01-01T00:00:00Z is before start 2027-02-01T00:00:00Z; "
        "the job would never run"
    ]


def test_line_of_a_key_merged_from_an_anchor(tmp_path: Path) -> None:
    write(
        tmp_path,
        "jobs.yaml",
        """
        jobs:
          - &base
            name: first
            schedule: every 5m
            command: echo
            timeout: 5 minutes please
          - <<: *base
            name: second
        """,
    )
    assert problems(Path("jobs.yaml")) == [
        "jobs.yaml:6: jobs[0].timeout: " + core_error(parse_duration, "5 minutes please"),
        "jobs.yaml:6: jobs[1].timeout: " + core_error(parse_duration, "5 minutes please"),
    ]


def test_alias_bombs_stay_cheap(tmp_path: Path) -> None:
    # notify[9] would hold 10**10 strings if aliases were expanded.
    items = ["      - &a0 [x, x, x, x, x, x, x, x, x, x]"]
    items += [f"      - &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    text = "jobs:\n  - name: a\n    schedule: every 1m\n    command: x\n    notify:\n"
    write(tmp_path, "bomb.yaml", text + "\n".join(items) + "\n")

    found = problems(Path("bomb.yaml"))

    assert found == [
        f"bomb.yaml:{6 + i}: jobs[0].notify[{i}]: expected a string, got a list" for i in range(10)
    ]


# --------------------------------------------------------------------------- duplicates


def test_duplicates_across_and_within_files_name_both_places(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.yaml",
        """
        jobs:
          - name: nightly
            group: billing
            schedule: every 1m
            command: x
        """,
    )
    write(
        tmp_path,
        "b.yaml",
        """
        jobs:
          - name: other
            schedule: every 1m
            command: x
          - schedule: every 1m
            command: x
            group: billing
            name: nightly
          - name: other
            schedule: every 2m
            command: y
        """,
    )
    assert problems(Path("a.yaml"), Path("b.yaml")) == [
        "b.yaml:8: jobs[1].name: duplicate job 'billing/nightly': also defined at a.yaml:2",
        "b.yaml:9: jobs[2].name: duplicate job 'default/other': also defined at b.yaml:2",
    ]


def test_same_name_in_different_groups_is_fine(tmp_path: Path) -> None:
    write(
        tmp_path,
        "jobs.yaml",
        """
        jobs:
          - {name: sync, group: one, schedule: every 1m, command: x}
          - {name: sync, group: two, schedule: every 1m, command: x}
        """,
    )
    assert len(load_job_files([Path("jobs.yaml")]).jobs) == 2


# --------------------------------------------------------------------------- collecting


def test_all_problems_of_all_files_are_collected_in_file_order(tmp_path: Path) -> None:
    write(
        tmp_path,
        "conf/1-broken.yaml",
        """
        jobs:
          - name: a
            schedule: [
        """,
    )
    write(
        tmp_path,
        "conf/2-jobs.yaml",
        """
        jobs:
          - name: Bad Name
            schedule: every 1m
            command: x
          - name: b
            schedule: every 1m
            command: x
            retries: {max: 101}
        """,
    )
    write(tmp_path, "conf/3-fine.yaml", "jobs: [{name: c, schedule: every 1m, command: x}]\n")

    with pytest.raises(JobFileError) as caught:
        load_job_files([Path("conf"), Path("gone.yml")])

    error = caught.value
    assert [(p.file, p.line, p.field) for p in error.problems] == [
        ("conf/1-broken.yaml", 4, "yaml"),
        ("conf/2-jobs.yaml", 2, "jobs[0].name"),
        ("conf/2-jobs.yaml", 8, "jobs[1].retries.max"),
        ("gone.yml", 1, "file"),
    ]
    assert error.problems[1] == Problem(
        "conf/2-jobs.yaml",
        2,
        "jobs[0].name",
        "must be 1-100 characters of a-z, 0-9, '-', '_', '.', starting with a letter or digit",
    )
    assert str(error).splitlines() == [str(problem) for problem in error.problems]
    assert str(error).splitlines()[2] == (
        "conf/2-jobs.yaml:8: jobs[1].retries.max: must be less than or equal to 100, got a "
        "number (101)"
    )


def test_a_validator_crash_becomes_a_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(data: object) -> object:
        if isinstance(data, dict) and data.get("schedule") == "every 1h":
            raise OverflowError("boom")
        return original(data)

    original = JobSpec.model_validate
    monkeypatch.setattr(JobSpec, "model_validate", explode)
    write(
        tmp_path,
        "jobs.yaml",
        """
        jobs:
          - name: a
            schedule: every 1h
            command: x
        """,
    )
    assert problems(Path("jobs.yaml")) == [
        "jobs.yaml:3: jobs[0].schedule: a number is too large in 'every 1h'"
    ]


# --------------------------------------------------------------------------- the example


def test_the_example_file_loads_cleanly() -> None:
    loaded = load_job_files([EXAMPLE])
    names = {job.name for job in loaded.jobs}
    assert {"heartbeat", "disk-report", "log-check", "office-hours-sync"} <= names
    assert loaded.groups == {"demo"}
    by_name = {job.name: job for job in loaded.jobs}
    assert by_name["heartbeat"].schedule == "every 10s"
    assert by_name["log-check"].failure_pattern
    assert by_name["office-hours-sync"].timezone == "Europe/Berlin"
    assert by_name["office-hours-sync"].starting_deadline is not None
    assert any(job.retries.max > 0 and job.timeout for job in loaded.jobs)
    assert any(job.overlap is OverlapPolicy.FORBID for job in loaded.jobs)
    for job in loaded.jobs:
        assert job.parsed_schedule() is not None
        assert job.pool == "default"
        assert job.command


def test_the_example_commands_run_under_posix_sh(tmp_path: Path) -> None:
    """Each command starts and finishes with only sh and coreutils (first attempt)."""
    for job in load_job_files([EXAMPLE]).jobs:
        argv = ["/bin/sh", "-c", job.command] if isinstance(job.command, str) else job.command
        assert argv is not None
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "TMPDIR": str(tmp_path),
            "BELFRY_JOB": str(job.key),
            "BELFRY_ATTEMPT": "1",
            "BELFRY_SCHEDULED_FOR": "2027-01-01T00:00:00Z",
            **job.env,
        }
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
        expected = 1 if job.name == "nightly-backup" else 0  # fails its first attempt
        assert result.returncode == expected, (job.name, result.stderr)
        assert result.stdout or result.stderr


def test_unknown_yaml_tags_are_not_strings(tmp_path: Path) -> None:
    write(tmp_path, "jobs.yaml", "jobs:\n  - {name: a, schedule: !env SCHEDULE, command: x}\n")
    assert problems(Path("jobs.yaml")) == [
        "jobs.yaml:2: jobs[0].schedule: expected a string or a list, got a value tagged !env"
    ]


def test_channels_and_groups_load_with_file_lines(tmp_path: Path) -> None:
    write(
        tmp_path,
        "jobs.yaml",
        """
        channels:
          - name: oncall
            apprise: "slack://a/b/c"
          - name: hook
            webhook: {url: "https://ops.example/belfry", secret: s3cret}
          - name: both
            apprise: "slack://a/b/c"
            email: {to: [ops@example.com]}
          - name: mail
            email: {to: [not-an-address]}
        groups:
          - name: billing
            notify: [oncall]
            alerts:
              - {on: late, notify: [hook]}
              - {on: too_long, factor: 3, after: 10m}
              - {on: sometimes}
        """,
    )
    found = problems(Path("jobs.yaml"))
    assert found == [
        "jobs.yaml:7: channels[2].apprise: a channel needs exactly one of 'apprise', "
        "'webhook' or 'email' (has apprise and email)",
        "jobs.yaml:10: channels[3].email.to: 'not-an-address' is not an e-mail address",
        "jobs.yaml:15: groups[0].alerts[0]: on: 'late' needs 'after'",
        "jobs.yaml:17: groups[0].alerts[2].on: expected one of 'failure', 'recovery', "
        "'missed', 'late', 'too_long' or 'too_short', got a string ('sometimes')",
    ]


def test_a_valid_channel_and_group_are_loaded(tmp_path: Path) -> None:
    write(
        tmp_path,
        "jobs.yaml",
        """
        channels:
          - {name: oncall, webhook: {url: "https://ops.example/hook"}, realert: 30m}
        groups:
          - {name: billing, notify: [oncall], alerts: [{on: too_short, under: 2s}]}
        jobs:
          - {name: a, group: billing, schedule: "@daily", command: "true", notify: [oncall]}
        """,
    )
    loaded = load_job_files([Path("jobs.yaml")])
    assert [channel.name for channel in loaded.channels] == ["oncall"]
    assert loaded.channels[0].realert == timedelta(minutes=30)
    assert loaded.alert_groups[0].alerts[0].under == timedelta(seconds=2)
