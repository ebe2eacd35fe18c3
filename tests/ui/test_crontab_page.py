"""The crontab import page: paste a crontab, convert it to job YAML (as ``belfry
import-crontab``), open that in the apply page, preview and apply it."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.sync_api import Browser, Page, expect

from belfry.services.job_files import load_job_text
from tests.e2e.conftest import Belfry
from tests.ui.conftest import log_in

# Line 6 is @reboot (not carried over); the % sends the rest of line 5 to tr's stdin.
CRONTAB = """\
# legacy jobs of app01
MAILTO=ops@example.com
PATH=/usr/local/bin:/usr/bin:/bin
*/5 * * * * /usr/local/bin/queue-drain --max 100
0 4 * * * tr a-z A-Z%quiet please%bye
@reboot /usr/local/bin/warm-cache
15 2 * * MON-FRI cd /srv && ./backup.sh
"""
TR_COMMAND = "printf '%s' 'quiet please\nbye' | /bin/sh -c 'tr a-z A-Z'"

BAD = """\
PATH=/usr/bin:/bin
0 1 * * * /usr/local/bin/early
61 * * * * /usr/local/bin/too-late
30 2 * * * /usr/local/bin/fine
"""
BAD_LINE_MESSAGE = (
    "line 3: invalid cron expression '61 * * * *': bad minute field '61' (allowed: 0-59)"
)


def _jobs(server: Belfry) -> dict[str, Any]:
    """Every job on the server, with its schedule."""
    return {job["job"]: job["schedule"] for job in server.api("GET", "/api/v1/jobs")}


def _convert(page: Page, text: str, **options: str) -> None:
    page.get_by_label("Crontab", exact=True).fill(text)
    for label, value in options.items():
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_role("button", name="Convert").click()


def test_a_crontab_converts_then_opens_in_apply_where_it_is_previewed_and_applied(
    page: Page, ui_server: Belfry
) -> None:
    page.goto(ui_server.url + "/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Import crontab").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Import a crontab")
    expect(page.get_by_label(re.compile("^User crontab"))).to_be_checked()
    _convert(page, CRONTAB, Group="legacy", **{"Run as (user crontab only, optional)": "deploy"})

    outcome = page.locator("section.outcome")
    expect(outcome.get_by_role("heading", level=2)).to_have_text("3 jobs converted")
    skipped = outcome.get_by_role("list")
    expect(skipped).to_have_text(re.compile(r"^line 6: @reboot is not supported .*line skipped"))
    generated = page.get_by_label("Generated YAML")
    expect(generated).not_to_be_editable()
    yaml_text = generated.input_value()
    # The converter's comments come along: the header, what changed, the line skipped.
    assert yaml_text.startswith("# Converted by belfry import-crontab from crontab.\n")
    assert "# crontab:6: @reboot /usr/local/bin/warm-cache\n" in yaml_text
    assert "@reboot is not supported" in yaml_text
    assert "cron sent the text after % to the command's stdin" in yaml_text
    jobs = {job.name: job for job in load_job_text(yaml_text).jobs}
    assert {name: job.schedule for name, job in jobs.items()} == {
        "queue-drain": "*/5 * * * *",
        "tr": "0 4 * * *",
        "backup": "15 2 * * MON-FRI",
    }
    assert jobs["tr"].command == TR_COMMAND
    assert {str(job.key.group) for job in jobs.values()} == {"legacy"}
    # The crontab stays in its box for another try.
    expect(page.get_by_label("Crontab", exact=True)).to_have_value(CRONTAB)
    assert _jobs(ui_server) == {}

    page.get_by_role("button", name="Open in Apply").click()
    page.wait_for_url(ui_server.url + "/apply")
    expect(page.get_by_label("Job file (YAML)")).to_have_value(yaml_text)
    # Only carried over: nothing previewed, nothing applied.
    expect(page.locator("section.outcome")).to_have_count(0)
    expect(page.get_by_role("alert")).to_have_count(0)
    assert _jobs(ui_server) == {}

    page.get_by_role("button", name="Preview").click()
    applied = page.locator("section.outcome")
    expect(applied.get_by_role("heading")).to_have_text("Preview: nothing applied yet")
    expect(applied).to_contain_text("3 to be created")
    assert _jobs(ui_server) == {}
    page.get_by_role("button", name="Apply", exact=True).click()
    expect(applied.get_by_role("heading")).to_have_text("Applied")
    expect(applied).to_contain_text("3 created")

    assert _jobs(ui_server) == {
        "legacy/queue-drain": "*/5 * * * *",
        "legacy/tr": "0 4 * * *",
        "legacy/backup": "15 2 * * MON-FRI",
    }
    tr = ui_server.api("GET", "/api/v1/jobs/legacy/tr")["spec"]
    # The stdin's newline went through both text boxes intact.
    assert tr["command"] == TR_COMMAND
    assert tr["run_as"] == "deploy"
    assert tr["env"] == {"PATH": "/usr/local/bin:/usr/bin:/bin"}
    # overlap: allow is the default, which the API leaves out.
    assert (tr["misfire"], tr.get("overlap", "allow")) == ("skip", "allow")
    assert tr["description"] == "0 4 * * * tr a-z A-Z%quiet please%bye"


def test_a_bad_line_is_named_in_one_line_and_nothing_is_converted(
    page: Page, ui_server: Belfry
) -> None:
    page.goto(ui_server.url + "/import-crontab")
    with page.expect_response(ui_server.url + "/import-crontab") as answer:
        _convert(page, BAD)
    assert answer.value.status == 422
    alert = page.get_by_role("alert")
    expect(alert.get_by_role("heading")).to_have_text("1 problem: nothing was converted")
    problem = alert.get_by_role("listitem")
    expect(problem).to_have_count(1)
    message = problem.locator("code").first
    expect(message).to_have_text(BAD_LINE_MESSAGE)
    assert "\n" not in message.inner_text()
    expect(problem).to_contain_text("in 61 * * * * /usr/local/bin/too-late")
    expect(page.get_by_label("Generated YAML")).to_have_count(0)
    expect(page.get_by_label("Crontab", exact=True)).to_have_value(BAD)

    # As --skip-invalid: the other lines convert, the bad one is a comment and listed.
    page.get_by_label("Skip invalid lines").check()
    page.get_by_role("button", name="Convert").click()
    outcome = page.locator("section.outcome")
    expect(outcome.get_by_role("heading", level=2)).to_have_text("2 jobs converted")
    expect(outcome.get_by_role("list")).to_have_text(BAD_LINE_MESSAGE)
    yaml_text = page.get_by_label("Generated YAML").input_value()
    assert "# crontab:3: 61 * * * * /usr/local/bin/too-late\n" in yaml_text
    assert "skipped, invalid: invalid cron expression" in yaml_text
    assert [job.name for job in load_job_text(yaml_text).jobs] == ["early", "fine"]

    # A bad option is said with its label.
    page.get_by_label("Time zone").fill("Europe/Berln")
    page.get_by_role("button", name="Convert").click()
    expect(page.get_by_role("alert")).to_contain_text("Time zone: ")
    expect(page.get_by_label("Generated YAML")).to_have_count(0)


def test_any_user_may_convert_a_system_crontab_with_the_session_s_csrf_token(
    browser: Browser, ui_server: Belfry
) -> None:
    # No grant at all: converting changes nothing on the server.
    ui_server.api("POST", "/api/v1/users", json={"name": "nora", "password": "nora-password-1"})
    context = browser.new_context()
    tab = context.new_page()
    log_in(tab, ui_server, "nora", "nora-password-1")
    tab.goto(ui_server.url + "/import-crontab")
    tab.get_by_label(re.compile("^System crontab")).check()
    _convert(
        tab,
        "SHELL=/bin/sh\n"
        "17 * * * * root cd / && run-parts --report /etc/cron.hourly\n"
        "25 6 * * * backup /usr/local/bin/nightly-dump\n",
        Group="ops",
    )
    expect(tab.locator("section.outcome").get_by_role("heading", level=2)).to_have_text(
        "2 jobs converted"
    )
    jobs = load_job_text(tab.get_by_label("Generated YAML").input_value()).jobs
    assert [(str(job.key), job.run_as) for job in jobs] == [
        ("ops/run-parts", "root"),
        ("ops/nightly-dump", "backup"),
    ]
    expect(tab.get_by_label(re.compile("^System crontab"))).to_be_checked()

    # A user crontab's line read as a system one has no command after its "user".
    _convert(tab, "0 5 * * * /usr/bin/true\n")
    expect(tab.get_by_role("alert").locator("code").first).to_have_text(
        "line 1: expected a user, then a command (a system crontab)"
    )
    # And a system crontab names its users: Run as is for user crontabs.
    _convert(tab, "0 5 * * * root /usr/bin/true\n", **{"Run as (user crontab only, optional)": "x"})
    expect(tab.get_by_role("alert")).to_contain_text("Run as: a system crontab names the user")

    # A POST without the session's CSRF token is refused; without a session, to the login.
    refused = tab.request.post(
        ui_server.url + "/import-crontab", multipart={"crontab": "@daily true\n"}
    )
    assert refused.status == 403
    anonymous = httpx.post(
        ui_server.url + "/import-crontab", data={"crontab": "@daily true\n"}, follow_redirects=False
    )
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/login")
    context.close()
