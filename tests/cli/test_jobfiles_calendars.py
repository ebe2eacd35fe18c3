"""Calendars in job files: loaded with the jobs, checked with file:line: field: message."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path

from job_file_helpers import problems, write

from belfry.services.job_files import SourceLocation, load_job_files


def test_calendars_load_beside_jobs(tmp_path: Path) -> None:
    write(
        tmp_path,
        "all.yaml",
        """
        calendars:
          - name: holidays
            timezone: Europe/Berlin
            dates: [2027-12-24, 2027-12-25]
          - name: business-hours
            weekly:
              - {days: MON-FRI, from: "09:00", to: "17:30"}
            exclude: [holidays]
        jobs:
          - name: report
            schedule: "0 * * * *"
            command: "true"
            only: [business-hours]
            on_excluded: defer
        """,
    )
    loaded = load_job_files([Path("all.yaml")])
    assert [calendar.name for calendar in loaded.calendars] == ["holidays", "business-hours"]
    assert loaded.calendars[0].dates == [date(2027, 12, 24), date(2027, 12, 25)]
    assert loaded.calendars[1].weekly[0].start == time(9, 0)
    assert loaded.calendar_sources["business-hours"] == SourceLocation("all.yaml", 5)
    assert loaded.jobs[0].only == ["business-hours"]
    assert loaded.warnings == []


def test_calendar_problems_name_file_line_and_field(tmp_path: Path) -> None:
    write(
        tmp_path,
        "cal.yaml",
        """
        calendars:
          - name: holidays
            dates: [2027-12-24, 2027-13-01]
          - name: hours
            timezone: Mars/Base
            weekly:
              - {days: MOM, from: "09:00"}
            ranges:
              - {from: 2027-12-27, too: 2027-12-31}
          - name: weekend
            weekly: [{days: "SAT,SUN"}]
          - name: weekend
            dates: [2027-01-01]
          - dates: [2027-01-01]
        """,
    )
    found = problems(Path("cal.yaml"))
    assert found[0].startswith("cal.yaml:3: calendars[0].dates[1]: ")
    assert found[1].startswith("cal.yaml:5: calendars[1].timezone: unknown time zone 'Mars/Base'")
    assert found[2].startswith("cal.yaml:7: calendars[1].weekly[0].days: ")
    assert "MOM" in found[2]
    assert sorted(found[3:5]) == [
        "cal.yaml:9: calendars[1].ranges[0].to: required field is missing",
        "cal.yaml:9: calendars[1].ranges[0].too: unknown field (did you mean 'to'?)",
    ]
    assert found[5] == (
        "cal.yaml:12: calendars[3].name: duplicate calendar 'weekend': also defined at cal.yaml:10"
    )
    assert found[6] == "cal.yaml:14: calendars[4].name: required field is missing"
    assert len(found) == 7


def test_references_outside_the_files_warn_and_cycles_fail(tmp_path: Path) -> None:
    write(
        tmp_path,
        "jobs.yaml",
        """
        jobs:
          - name: report
            schedule: "0 * * * *"
            command: "true"
            exclude: [holidays, server-side]
        calendars:
          - name: holidays
            dates: [2027-12-24]
        """,
    )
    loaded = load_job_files([Path("jobs.yaml")])
    assert [str(warning) for warning in loaded.warnings] == [
        "jobs.yaml:5: jobs[0].exclude[1]: calendar 'server-side' is not defined in these "
        "files (apply needs it on the server)"
    ]

    write(
        tmp_path,
        "loop.yaml",
        """
        calendars:
          - name: a
            include: [b]
          - name: b
            include: [a]
        """,
    )
    (problem,) = problems(Path("loop.yaml"))
    assert problem.startswith("loop.yaml:2: calendars[a].include: a includes itself")


def test_a_job_naming_calendars_badly(tmp_path: Path) -> None:
    write(
        tmp_path,
        "jobs.yaml",
        """
        jobs:
          - name: report
            schedule: "0 * * * *"
            command: "true"
            exclude: [Holidays]
            on_excluded: later
          - name: lone
            schedule: "0 * * * *"
            command: "true"
            on_excluded: defer
        """,
    )
    assert problems(Path("jobs.yaml")) == [
        "jobs.yaml:5: jobs[0].exclude: 'Holidays' is not a calendar name: must be 1-100 "
        "characters of a-z, 0-9, '-', '_', '.', starting with a letter or digit",
        "jobs.yaml:6: jobs[0].on_excluded: expected one of 'skip' or 'defer', got a string "
        "('later')",
        "jobs.yaml:10: jobs[1].on_excluded: 'defer' needs calendars in 'exclude' or 'only'",
    ]
