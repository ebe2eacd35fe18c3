"""Crontab text as cron reads it (belfry.core.crontab)."""

from __future__ import annotations

from pathlib import PurePath

import pytest

from belfry.core.crontab import (
    is_system_crontab,
    job_name_stem,
    parse_crontab,
    split_percent,
)


def test_settings_apply_to_the_lines_after_them() -> None:
    crontab = parse_crontab(
        "0 1 * * * before\n"
        "PATH = /opt/bin:/usr/bin\n"
        "GREETING='  hello  '\n"
        "SHELL=/bin/bash\n"
        "CRON_TZ=Europe/Berlin\n"
        "MAILTO=ops@example.com\n"
        "0 2 * * * after\n"
    )
    before, after = crontab.entries
    assert before.env == {} and before.timezone is None and before.shell == "/bin/sh"
    assert before.mailto is None
    # MAILTO and CRON_TZ are cron's own settings, not the command's environment.
    assert after.env == {"PATH": "/opt/bin:/usr/bin", "GREETING": "  hello  ", "SHELL": "/bin/bash"}
    assert (after.shell, after.timezone, after.mailto) == (
        "/bin/bash",
        "Europe/Berlin",
        "ops@example.com",
    )
    assert [note.line for note in crontab.notes] == [6]


def test_tz_is_the_zone_unless_cron_tz_says_otherwise() -> None:
    crontab = parse_crontab(
        "TZ=Asia/Tokyo\n0 1 * * * a\nCRON_TZ=UTC\nTZ=Europe/Paris\n0 2 * * * b\n"
    )
    first, second = crontab.entries
    assert first.timezone == "Asia/Tokyo" and first.env == {"TZ": "Asia/Tokyo"}
    assert second.timezone == "UTC" and second.env == {"TZ": "Europe/Paris"}


@pytest.mark.parametrize(
    "expression",
    [
        "*/5 * * * *",
        "0 9-17 * * MON-FRI",
        "15 3 1,15 JAN-MAR *",
        "0 0 * * 7",
        "5-55/10 */2 * * sun",
    ],
)
def test_expressions_are_kept_exactly(expression: str) -> None:
    (entry,) = parse_crontab(f"{expression}  run  it \n").entries
    assert entry.schedule == expression
    assert entry.command == "run  it "


def test_aliases_kept_and_reboot_skipped_with_a_note() -> None:
    crontab = parse_crontab("@daily a\n@REBOOT b\n@weekly c\n")
    assert [entry.schedule for entry in crontab.entries] == ["@daily", "@weekly"]
    (note,) = crontab.notes
    assert note.skipped and note.line == 2 and "@reboot is not supported" in note.message


def test_system_crontabs_have_the_user_field() -> None:
    (entry,) = parse_crontab(
        "17 * * * * root cd / && run-parts /etc/cron.hourly\n", system=True
    ).entries
    assert entry.user == "root" and entry.command == "cd / && run-parts /etc/cron.hourly"
    (entry,) = parse_crontab("@hourly www-data php cron.php\n", system=True).entries
    assert (entry.user, entry.command) == ("www-data", "php cron.php")
    assert is_system_crontab(PurePath("/etc/crontab"))
    assert is_system_crontab(PurePath("/etc/cron.d/certbot"))
    assert not is_system_crontab(PurePath("/home/me/my.crontab"))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("61 * * * * x", "bad minute field '61'"),
        ("0 0 L * * x", "day-of-month: 'L' is not a cron field"),
        ("H * * * * x", "minute: 'H' is not a cron field"),
        ("0 0 * * *", "expected five time fields"),
        ("* * * x", "expected five time fields"),
        ("@fortnightly x", "unknown schedule '@fortnightly'"),
        ("0 0 * FOO * x", "bad month field 'FOO'"),
        ("0 0 * * * %only stdin", "no command before the first %"),
        ("CRON_TZ=Mars/Base", "CRON_TZ: unknown time zone"),
    ],
)
def test_invalid_lines_are_problems_with_their_line(line: str, message: str) -> None:
    crontab = parse_crontab(f"# first\n{line}\n")
    (problem,) = crontab.problems
    assert problem.line == 2 and problem.text == line
    assert message in problem.message
    assert crontab.entries == []


def test_a_system_line_without_a_command_is_a_problem() -> None:
    (problem,) = parse_crontab("@daily root\n", system=True).problems
    assert "a user, then a command" in problem.message


def test_percent_splits_command_and_stdin() -> None:
    assert split_percent("echo hi") == ("echo hi", None)
    assert split_percent(r"date +\%F") == ("date +%F", None)
    assert split_percent(r"mail -s x bob%Dear Bob,%50\% off%") == (
        "mail -s x bob",
        "Dear Bob,\n50% off\n",
    )
    # Other backslashes are the shell's business: kept as written.
    assert split_percent(r"echo a\ b\n%x\y") == (r"echo a\ b\n", r"x\y")


@pytest.mark.parametrize(
    ("command", "stem"),
    [
        ("/usr/local/bin/backup.sh --full", "backup"),
        ("cd /srv/app && ./bin/rake cleanup", "rake"),
        ("php /var/www/artisan schedule:run", "php-artisan"),
        ("python3 -u manage.py clearsessions", "python3-manage"),
        ("RAILS_ENV=production nice -n 10 bundle exec rake x", "bundle"),
        ("  ", "job"),
        ("'unterminated", "unterminated"),
    ],
)
def test_job_names_come_from_the_command(command: str, stem: str) -> None:
    assert job_name_stem(command) == stem
