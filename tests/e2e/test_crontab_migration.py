"""Issue 9 "Done when": a realistic 50-line crontab migrates, fires at the same instants as
cron would (checked against an independent brute-force cron matcher) and runs the same
commands, with the environment and stdin cron gave them, on a real server."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from belfry.core.jobs import JobSpec
from belfry.services.job_files import load_job_text

from .conftest import BELFRY, Belfry, start_server

CRONTAB = r"""# Legacy crontab of app01 (crontab -l), 50 lines.
# m h  dom mon dow   command
MAILTO=ops@example.com
PATH=/usr/local/bin:/usr/bin:/bin
GREETING='hello from cron'

*/5 * * * * echo "$GREETING via $PATH"
*/15 * * * * /usr/local/bin/queue-drain --max 100
0 * * * * /usr/local/bin/rotate-logs
@hourly /usr/local/bin/heartbeat
@daily /usr/local/bin/cleanup-tmp
@weekly /usr/local/bin/compact-db
@monthly /usr/local/bin/invoice-run
@yearly /usr/local/bin/archive-year
@midnight /usr/local/bin/reset-quotas
@reboot /usr/local/bin/warm-cache
0 9-17 * * MON-FRI /usr/local/bin/office-hours-report
30 8 * * 1-5 /usr/local/bin/standup-reminder
0 0 1 JAN * /usr/local/bin/happy-new-year
0 12 1 JAN,JUL * /usr/local/bin/half-year
45 23 * * SUN /usr/local/bin/weekly-summary
0 6 * * 0,6 /usr/local/bin/weekend-job
0 6 * * 7 /usr/local/bin/sunday-seven
0 4 * * * tr a-z A-Z%quiet please%bye
15 5 * * * date -d @0 -u +\%Y-\%m-\%d
# steps and ranges
0 */2 * * * /usr/local/bin/every-two-hours
10 8-20/4 * * * /usr/local/bin/four-hourly-day
*/20 9-17 * * MON-FRI /usr/local/bin/busy-check
0 0 */3 * * /usr/local/bin/every-third-day
0 0 1-7 * 1 /usr/local/bin/first-week-or-monday
0 3 15 * * /usr/local/bin/mid-month
# 0 18 L * * not cron syntax
MAILTO=""
5 0 * FEB-APR * /usr/local/bin/spring-prep
0 7 * 3-5 mon-fri /usr/local/bin/spring-weekdays
CRON_TZ=America/New_York
0 9 * * * /usr/local/bin/ny-morning
30 16 * * 1-5 /usr/local/bin/ny-close
*/30 * * * * /usr/local/bin/ny-halfhourly
0 0 1 * * /usr/local/bin/ny-monthly
CRON_TZ=Europe/Berlin
0 8 * * MON /usr/local/bin/berlin-monday
0 20 24 DEC * /usr/local/bin/christmas-eve
SHELL=/bin/bash
0 6 * * 1-5 [[ -n "$BASH_VERSION" ]] && echo "bash says $GREETING"
0 22 * * * cat%from stdin under bash
1 1 1 1 * /usr/local/bin/once-a-year
59 23 31 12 * /usr/local/bin/new-years-eve
0 0 29 2 * /usr/local/bin/leap-day
"""


# --------------------------------------------------------------------------- the oracle

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_NAMES = {
    **{name: number for number, name in enumerate(_MONTHS, start=1)},
    **{name: number for number, name in enumerate(_DAYS)},
}
_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
_ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
}


def _values(field: str, low: int, high: int) -> set[int]:
    """The values of one crontab(5) field, written from the manual, not from Belfry."""
    values: set[int] = set()
    for item in field.lower().split(","):
        body, _, step = item.partition("/")
        if body == "*":
            first, last = low, high
        else:
            start, _, end = body.partition("-")
            first = int(_NAMES.get(start, start))
            last = int(_NAMES.get(end, end)) if end else (high if step else first)
        values.update(range(first, last + 1, int(step or 1)))
    return values


def oracle(expression: str, zone: ZoneInfo, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` instants after ``after`` at which cron fires ``expression``,
    found by trying every day, hour and minute (no DST change in the windows used)."""
    fields = _ALIASES.get(expression, expression).split()
    minutes, hours, days, months, weekdays = (
        _values(field, *bounds) for field, bounds in zip(fields, _RANGES, strict=True)
    )
    weekdays = {day % 7 for day in weekdays}
    # crontab(5): when both day fields are restricted (neither starts with *), either matches.
    either = not fields[2].startswith("*") and not fields[4].startswith("*")
    found: list[datetime] = []
    day = after.astimezone(zone).date()
    while len(found) < count:
        in_month = day.month in months
        dom, dow = day.day in days, day.isoweekday() % 7 in weekdays
        if in_month and ((dom or dow) if either else (dom and dow)):
            for hour in sorted(hours):
                for minute in sorted(minutes):
                    local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
                    instant = local.astimezone(UTC)
                    if instant > after and len(found) < count:
                        found.append(instant)
        day += timedelta(days=1)
        assert day < date(2060, 1, 1), expression
    return found


def _belfry_next(job: JobSpec, after: datetime, count: int) -> list[datetime]:
    schedule = job.parsed_schedule()
    instants: list[datetime] = []
    while len(instants) < count:
        nxt = schedule.next_after(instants[-1] if instants else after)
        assert nxt is not None
        instants.append(nxt)
    return instants


# --------------------------------------------------------------------------- the tests


def _import(tmp_path: Path, *extra: str) -> tuple[str, str]:
    source = tmp_path / "app01.crontab"
    source.write_text(CRONTAB)
    done = subprocess.run(
        [BELFRY, "import-crontab", str(source), "--group", "app01", *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


def test_the_crontab_is_fifty_lines_of_the_usual_mix() -> None:
    assert len(CRONTAB.splitlines()) == 50


def test_every_job_fires_when_cron_would(tmp_path: Path) -> None:
    yaml_text, warnings = _import(tmp_path)
    assert "app01.crontab:16: @reboot is not supported" in warnings
    jobs = load_job_text(yaml_text).jobs
    job_lines = [
        line
        for line in CRONTAB.splitlines()
        if line and not line.startswith("#") and "=" not in line.split()[0]
    ]
    assert len(job_lines) == 38  # one of them @reboot, skipped
    assert [job.description for job in jobs] == [
        line for line in job_lines if not line.startswith("@reboot")
    ]
    start = datetime(2027, 1, 4, 0, 0, tzinfo=UTC)
    for job in jobs:
        # The expression is kept exactly as written.
        assert isinstance(job.schedule, str) and job.description.startswith(job.schedule + " ")
        zone = ZoneInfo(job.timezone)
        assert _belfry_next(job, start, 8) == oracle(str(job.schedule), zone, start, 8), (
            job.description
        )


@pytest.fixture
def server(tmp_path: Path, sqlite_url: str) -> Iterator[Belfry]:
    belfry = start_server(tmp_path / "home", sqlite_url)
    try:
        yield belfry
    finally:
        belfry.stop()


def test_migrated_jobs_run_the_same_commands(tmp_path: Path, server: Belfry) -> None:
    # run_as needs a root worker (the embedded one runs as the tests do).
    extra = ("--user-crontab", "root") if os.geteuid() == 0 else ()
    yaml_text, _ = _import(tmp_path, *extra)
    jobs = {job.description: job for job in load_job_text(yaml_text).jobs}
    path = tmp_path / "migrated.yaml"
    path.write_text(yaml_text)
    applied = server.cli("apply", "-f", str(path))
    assert applied.returncode == 0, applied.stdout + applied.stderr

    def run(description: str) -> str:
        job = jobs[description]
        done = server.cli("run", f"app01/{job.name}", "--wait", timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    # The environment lines above a job reach its command.
    assert "hello from cron via /usr/local/bin:/usr/bin:/bin" in run(
        '*/5 * * * * echo "$GREETING via $PATH"'
    )
    # % feeds stdin: each further % a newline.
    assert "QUIET PLEASE\nBYE" in run("0 4 * * * tr a-z A-Z%quiet please%bye")
    # \% is a literal %.
    assert "1970-01-01" in run(r"15 5 * * * date -d @0 -u +\%Y-\%m-\%d")
    # SHELL=/bin/bash: the command runs under bash, with the settings above it.
    assert "bash says hello from cron" in run(
        '0 6 * * 1-5 [[ -n "$BASH_VERSION" ]] && echo "bash says $GREETING"'
    )
    assert "from stdin under bash" in run("0 22 * * * cat%from stdin under bash")
