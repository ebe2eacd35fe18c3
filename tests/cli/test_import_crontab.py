"""`belfry import-crontab`: crontabs to YAML that validates, offline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from belfry.cli.main import main
from belfry.services.job_files import load_job_text

BELFRY = str(Path(sys.executable).with_name("belfry"))


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(["import-crontab", *args])
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def test_user_crontab_becomes_valid_commented_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "me.cron").write_text(
        "# m h dom mon dow command\n"
        "MAILTO=ops@example.com\n"
        "PATH=/usr/local/bin:/usr/bin:/bin\n"
        "*/5 * * * * /usr/local/bin/poll.sh --quiet\n"
        "@reboot /usr/local/bin/warm-cache\n"
        "0 9 * * MON-FRI poll.sh --report\n"
        "SHELL=/bin/bash\n"
        "30 2 1 JAN * mail -s 'new year' bob%Dear Bob,%100\\% done\n"
    )
    code, out, err = _run(capsys, "me.cron", "--group", "legacy", "--user-crontab", "nobody")
    assert code == 0, err
    assert err == (
        "warning: me.cron:5: @reboot is not supported (Belfry schedules are about time, not "
        "host boots): run it from the host's init system; line skipped\n"
    )
    loaded = load_job_text(out)
    jobs = {str(job.key): job for job in loaded.jobs}
    assert list(jobs) == ["legacy/poll", "legacy/poll-2", "legacy/mail"]
    poll = jobs["legacy/poll"]
    assert poll.schedule == "*/5 * * * *" and poll.command == "/usr/local/bin/poll.sh --quiet"
    assert poll.run_as == "nobody" and poll.env == {"PATH": "/usr/local/bin:/usr/bin:/bin"}
    assert (poll.overlap.value, poll.misfire.value) == ("allow", "skip")
    assert poll.description == "*/5 * * * * /usr/local/bin/poll.sh --quiet"
    assert jobs["legacy/poll-2"].schedule == "0 9 * * MON-FRI"
    mail = jobs["legacy/mail"]
    assert mail.command == (
        "printf '%s' 'Dear Bob,\n100% done' | /bin/bash -c 'mail -s '\"'\"'new year'\"'\"' bob'"
    )
    # What it changed or could not carry over is said in comments.
    assert "# me.cron:2: MAILTO=ops@example.com" in out
    assert "# me.cron:5: @reboot /usr/local/bin/warm-cache" in out
    assert "misfire: skip (cron does not catch up" in out
    assert "cron sent the text after % to the command's stdin" in out


def test_system_crontab_user_field_is_run_as_and_shell_an_argv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "etc" / "cron.d").mkdir(parents=True)
    (tmp_path / "etc" / "crontab").write_text(
        "SHELL=/bin/bash\n17 * * * * root cd / && run-parts --report /etc/cron.hourly\n"
    )
    (tmp_path / "etc" / "cron.d" / "app").write_text("CRON_TZ=Europe/Berlin\n@daily www-data x\n")
    (tmp_path / "etc" / "cron.d" / "app.dpkg-old").write_text("garbage\n")
    code, out, err = _run(capsys, "etc/crontab", "etc/cron.d", "--timezone", "America/New_York")
    assert code == 0, err
    assert "etc/cron.d/app.dpkg-old: not read" in err
    hourly, app = load_job_text(out).jobs
    assert hourly.run_as == "root" and hourly.timezone == "America/New_York"
    assert hourly.command == ["/bin/bash", "-c", "cd / && run-parts --report /etc/cron.hourly"]
    assert (app.run_as, app.timezone, app.schedule) == ("www-data", "Europe/Berlin", "@daily")
    # --system reads any file with the user field.
    (tmp_path / "plain").write_text("0 0 * * * nobody true\n")
    code, out, _ = _run(capsys, "plain", "--system")
    assert code == 0 and load_job_text(out).jobs[0].run_as == "nobody"


def test_invalid_lines_fail_with_file_and_line_unless_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.cron").write_text("0 * * * * ok\n\n61 * * * * nope\n")
    code, out, err = _run(capsys, "bad.cron", "-o", "out.yaml")
    assert (code, out) == (2, "")
    assert err == (
        "belfry: bad.cron:3: invalid cron expression '61 * * * *': bad minute field '61' "
        "(allowed: 0-59)\n"
    )
    assert not (tmp_path / "out.yaml").exists()
    code, out, err = _run(capsys, "bad.cron", "--skip-invalid", "-o", "out.yaml")
    assert code == 0 and out == ""
    assert "warning: bad.cron:3:" in err and "wrote 1 jobs to out.yaml" in err
    written = (tmp_path / "out.yaml").read_text()
    assert "# bad.cron:3: 61 * * * * nope" in written
    assert [job.name for job in load_job_text(written).jobs] == ["ok"]


def test_bad_options_are_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c").write_text("@hourly true\n")
    assert _run(capsys, "c", "--group", "Bad Group")[0] == 2
    assert _run(capsys, "c", "--timezone", "Mars/Base")[0] == 2
    assert _run(capsys, "c", "--system", "--user-crontab", "me")[0] == 2
    code, _, err = _run(capsys, "missing")
    assert code == 2 and "missing:1: cannot read" in err


def test_only_reboot_lines_still_write_a_valid_file(tmp_path: Path) -> None:
    # Through the real entry point, and `belfry validate` takes the result.
    (tmp_path / "c").write_text("@reboot /srv/start\n")
    done = subprocess.run(
        [BELFRY, "import-crontab", str(tmp_path / "c"), "-o", str(tmp_path / "jobs.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "jobs.yaml").read_text()
    assert "jobs: []" in text and "#   @reboot is not supported" in text
    checked = subprocess.run(
        [BELFRY, "validate", "-f", str(tmp_path / "jobs.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
