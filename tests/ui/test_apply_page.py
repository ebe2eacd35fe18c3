"""The apply page: paste or upload YAML, preview the diff (a dry run), apply; the export."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import httpx
from playwright.sync_api import Browser, Page, expect

from belfry.services.job_files import load_job_text
from tests.e2e.conftest import Belfry
from tests.ui.conftest import first_step, log_in

EXISTING = """\
jobs:
  - {name: nightly, group: billing, schedule: "0 2 * * *", command: ./bill}
  - {name: weekly, group: billing, schedule: "0 3 * * MON", command: ./summary}
"""

CHANGED = """\
jobs:
  - name: nightly
    group: billing
    schedule: "30 2 * * *"
    command: ./bill
  - name: weekly
    group: billing
    schedule: "0 3 * * MON"
    command: ./summary
  - name: fresh
    group: billing
    schedule: every 5m
    command: echo fresh
"""


def _jobs(server: Belfry) -> dict[str, str]:
    """Every job on the server, with its schedule."""
    return {job["job"]: job["schedule"] for job in server.api("GET", "/api/v1/jobs")}


def _preview(page: Page, text: str, *, prune: bool = False) -> None:
    page.get_by_label("Job file (YAML)").fill(text)
    page.get_by_label(re.compile("^Prune")).set_checked(prune)
    page.get_by_role("button", name="Preview").click()


def test_a_preview_shows_the_diff_and_applies_nothing_then_apply_does(
    page: Page, ui_server: Belfry, tmp_path: Path
) -> None:
    ui_server.apply(tmp_path, EXISTING)
    page.goto(ui_server.url + "/apply")
    _preview(page, CHANGED)

    outcome = page.locator("section.outcome")
    expect(outcome.get_by_role("heading")).to_have_text("Preview: nothing applied yet")
    expect(outcome).to_contain_text("1 to be created")
    expect(outcome).to_contain_text("1 to be updated")
    expect(outcome).to_contain_text("1 unchanged")
    update = outcome.locator("tr", has_text="billing/nightly")
    expect(update).to_contain_text("update")
    expect(update).to_contain_text("schedule: 0 2 * * * → 30 2 * * *")
    expect(outcome.locator("tr", has_text="billing/fresh")).to_contain_text("create")
    assert _jobs(ui_server) == {"billing/nightly": "0 2 * * *", "billing/weekly": "0 3 * * MON"}

    # The text stays in the box: Apply sends what was previewed.
    page.get_by_role("button", name="Apply", exact=True).click()
    expect(outcome.get_by_role("heading")).to_have_text("Applied")
    expect(outcome).to_contain_text("1 created")
    assert _jobs(ui_server) == {
        "billing/nightly": "30 2 * * *",
        "billing/weekly": "0 3 * * MON",
        "billing/fresh": "every 5m",
    }
    audit = ui_server.api("GET", "/api/v1/audit", params={"action": "job.create"})
    assert [(entry["actor"], entry["target"]) for entry in audit][:1] == [
        ("admin", "billing/fresh")
    ]

    # Prune: the jobs of the file's groups that it does not mention would go.
    _preview(
        page,
        "jobs:\n  - {name: fresh, group: billing, schedule: every 5m, command: echo fresh}\n",
        prune=True,
    )
    expect(outcome).to_contain_text("2 to be deleted")
    expect(outcome.locator("tr", has_text="billing/weekly")).to_contain_text("delete")
    assert len(_jobs(ui_server)) == 3

    # Apply with Prune asks first: the first click applies nothing and shows what goes.
    page.get_by_role("button", name="Apply", exact=True).click()
    expect(outcome.get_by_role("heading")).to_have_text("Preview: nothing applied yet")
    expect(outcome.get_by_role("alert")).to_contain_text("this apply deletes 2")
    assert len(_jobs(ui_server)) == 3
    confirm = page.get_by_role("button", name="Apply and delete 2")
    expect(confirm).to_be_hidden()
    first_step(page, "Apply and delete…").click()
    expect(page.locator("#confirm-prune")).to_contain_text("delete the 2 marked “delete” above")
    assert len(_jobs(ui_server)) == 3
    confirm.click()
    expect(outcome.get_by_role("heading")).to_have_text("Applied")
    expect(outcome).to_contain_text("2 deleted")
    assert _jobs(ui_server) == {"billing/fresh": "every 5m"}


def test_apply_with_prune_asks_first_without_javascript(
    browser: Browser, ui_server: Belfry, tmp_path: Path
) -> None:
    ui_server.apply(tmp_path, EXISTING)
    context = browser.new_context(java_script_enabled=False)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    log_in(tab, ui_server)
    tab.goto(ui_server.url + "/apply")
    kept = "jobs:\n  - {name: nightly, group: billing, schedule: '0 2 * * *', command: ./bill}\n"
    tab.get_by_label("Job file (YAML)").fill(kept)
    tab.get_by_label(re.compile("^Prune")).check()
    tab.get_by_role("button", name="Apply", exact=True).click()
    expect(tab.locator("section.outcome")).to_contain_text("1 to be deleted")
    assert set(_jobs(ui_server)) == {"billing/nightly", "billing/weekly"}
    first_step(tab, "Apply and delete…").click()
    tab.get_by_role("button", name="Apply and delete 1").click()
    expect(tab.locator("section.outcome").get_by_role("heading")).to_have_text("Applied")
    assert set(_jobs(ui_server)) == {"billing/nightly"}
    # Prune that deletes nothing has nothing to confirm: Apply applies.
    tab.get_by_label("Job file (YAML)").fill(kept.replace("0 2 * * *", "0 4 * * *"))
    tab.get_by_label(re.compile("^Prune")).check()
    tab.get_by_role("button", name="Apply", exact=True).click()
    expect(tab.locator("section.outcome").get_by_role("heading")).to_have_text("Applied")
    assert _jobs(ui_server) == {"billing/nightly": "0 4 * * *"}
    context.close()


def test_bad_yaml_shows_the_problems_as_validate_does_and_applies_nothing(
    page: Page, ui_server: Belfry, tmp_path: Path
) -> None:
    bad = textwrap.dedent(
        """\
        jobs:
          - name: broken
            schedule: "61 * * * *"
            command: "true"
          - name: typo
            schedule: "@daily"
            comand: "true"
        """
    )
    page.goto(ui_server.url + "/apply")
    page.get_by_label("Job file (YAML)").fill(bad)
    page.get_by_role("button", name="Apply", exact=True).click()
    problems = page.get_by_role("alert")
    expect(problems).to_contain_text("2 problems: nothing was applied")
    expect(problems).to_contain_text(
        "3: jobs[0].schedule: invalid cron expression '61 * * * *': bad minute field '61'"
    )
    expect(problems).to_contain_text("7: jobs[1].comand: unknown field (did you mean 'command'?)")
    assert _jobs(ui_server) == {}

    # An uploaded file: its name leads each problem, as in `belfry validate -f FILE`.
    upload = tmp_path / "team.yaml"
    upload.write_text(bad)
    page.get_by_label("Or upload a file").set_input_files(upload)
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_role("alert")).to_contain_text("team.yaml:3: jobs[0].schedule: invalid")
    assert _jobs(ui_server) == {}


def test_an_editor_of_one_group_cannot_apply_jobs_of_another(
    browser: Browser, ui_server: Belfry
) -> None:
    ui_server.api("POST", "/api/v1/users", json={"name": "edna", "password": "edna-password-1"})
    ui_server.api("PUT", "/api/v1/grants/edna/team-a", json={"role": "editor"})
    context = browser.new_context()
    tab = context.new_page()
    log_in(tab, ui_server, "edna", "edna-password-1")
    tab.goto(ui_server.url + "/apply")
    tab.get_by_label("Job file (YAML)").fill(
        "jobs:\n"
        "  - {name: mine, group: team-a, schedule: '@daily', command: 'true'}\n"
        "  - {name: theirs, group: team-b, schedule: '@daily', command: 'true'}\n"
    )
    with tab.expect_response(ui_server.url + "/apply") as answer:
        tab.get_by_role("button", name="Apply", exact=True).click()
    assert answer.value.status == 403
    refusal = tab.get_by_role("alert")
    expect(refusal).to_contain_text("Not applied")
    expect(refusal).to_contain_text("edna may not edit group 'team-b' (needs editor)")
    assert _jobs(ui_server) == {}

    tab.get_by_label("Job file (YAML)").fill(
        "jobs:\n  - {name: mine, group: team-a, schedule: '@daily', command: 'true'}\n"
    )
    tab.get_by_role("button", name="Apply", exact=True).click()
    expect(tab.locator("section.outcome").get_by_role("heading")).to_have_text("Applied")
    assert _jobs(ui_server) == {"team-a/mine": "@daily"}
    context.close()


def test_export_downloads_the_readable_jobs_as_yaml_that_applies_back(
    page: Page, browser: Browser, ui_server: Belfry, tmp_path: Path
) -> None:
    ui_server.apply(
        tmp_path,
        """\
        calendars:
          - {name: holidays, dates: [2027-12-24]}
        jobs:
          - name: mine
            group: team-a
            schedule: "@daily"
            command: ./run
            exclude: [holidays]
            env: {TOKEN: {secret: hunter2-hunter2}}
          - {name: theirs, group: team-b, schedule: "@hourly", command: "true"}
        """,
    )
    page.goto(ui_server.url + "/apply")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download YAML").click()
    text = Path(download.value.path()).read_text()
    assert "hunter2" not in text
    loaded = load_job_text(text)
    assert sorted(str(job.key) for job in loaded.jobs) == ["team-a/mine", "team-b/theirs"]
    assert [calendar.name for calendar in loaded.calendars] == ["holidays"]

    ui_server.api("POST", "/api/v1/users", json={"name": "vera", "password": "vera-password-1"})
    ui_server.api("PUT", "/api/v1/grants/vera/team-a", json={"role": "viewer"})
    context = browser.new_context()
    tab = context.new_page()
    log_in(tab, ui_server, "vera", "vera-password-1")
    mine = tab.request.get(ui_server.url + "/export.yaml?group=team-a")
    assert mine.ok
    assert mine.headers["content-disposition"] == 'attachment; filename="belfry-team-a.yaml"'
    assert [str(job.key) for job in load_job_text(mine.text()).jobs] == ["team-a/mine"]
    everything = load_job_text(tab.request.get(ui_server.url + "/export.yaml").text())
    assert [str(job.key) for job in everything.jobs] == ["team-a/mine"]
    assert tab.request.get(ui_server.url + "/export.yaml?group=team-b").status == 403
    # Without a session there is nothing to download.
    anonymous = httpx.get(ui_server.url + "/export.yaml", follow_redirects=False)
    assert anonymous.status_code == 303
    context.close()
