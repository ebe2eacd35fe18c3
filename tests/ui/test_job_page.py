"""A job's page (schedule, ledger, actions, roles, no JavaScript, keyboard) and the explain
page, in a real browser against a real server with its embedded worker."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from playwright.sync_api import Browser, Locator, Page, expect

from belfry.core.records import RunRecord, Trigger
from belfry.core.states import RunState
from belfry.server.ui import job_detail_pages as pages
from tests.e2e.conftest import Belfry
from tests.ui.conftest import first_step, log_in

# Sundays of March and October at 02:30 in Berlin: any 10 next instants cover a whole
# month with a DST change in it, whenever the test runs.
DST_JOB = """
jobs:
  - name: sundays
    group: reports
    schedule: "30 2 * 3,10 0"
    timezone: Europe/Berlin
    command: ["true"]
    description: Weekly report, in the DST months.
    env: {API_KEY: {secret: hush-hush-value}}
"""
QUIET_JOB = """
jobs:
  - name: hello
    group: ops
    schedule: "@yearly"
    command: "echo hello"
"""
TICK_JOB = """
jobs:
  - name: tick
    group: ops
    schedule: "every 1s"
    command: "true"
"""
# Long enough for any run of the embedded worker on a busy CI machine.
RUN_WAIT = 30_000


def ledger_row(tab: Page, *texts: str) -> Locator:
    """The ledger's rows holding every one of ``texts``."""
    rows = tab.locator("#ledger tbody tr")
    for text in texts:
        rows = rows.filter(has_text=text)
    return rows


def test_the_job_page_shows_the_schedule_in_words_and_the_next_instants(
    page: Page, ui_server: Belfry, tmp_path: Path
) -> None:
    ui_server.apply(tmp_path, DST_JOB)
    page.goto(ui_server.url + "/jobs/reports/sundays")
    expect(page.get_by_role("heading", name="reports/sundays", level=1)).to_be_visible()
    expect(page.locator("#job-head")).to_contain_text("Weekly report, in the DST months.")
    schedule = page.get_by_role("region", name="Schedule")
    expect(schedule.locator(".schedule-words")).to_contain_text("Sunday")
    expect(schedule.locator(".schedule-words")).to_contain_text("Europe/Berlin")
    # Ten numbered runs, and the DST change marked where it moves one.
    numbers = schedule.locator("tbody tr td:first-child")
    expect(numbers.filter(has_text=re.compile(r"^10$"))).to_have_count(1)
    expect(numbers.filter(has_text=re.compile(r"^11$"))).to_have_count(0)
    # The last Sunday of March falls in the gap whenever the ten instants start.
    moved = schedule.locator("tbody tr").filter(has=page.locator(".mark-moved"))
    expect(moved.first).to_contain_text("DST gap")
    # The spec, its secret redacted.
    spec = page.get_by_role("region", name="Spec")
    expect(spec).to_contain_text("schedule: 30 2 * 3,10 0")
    expect(spec).to_contain_text("keep: true")
    assert "hush-hush-value" not in page.content()
    expect(page.get_by_text("No runs or skips yet.")).to_be_visible()
    expect(page.get_by_text("No finished runs yet.")).to_be_visible()
    # The schedule's explanation, one click away, with the job's schedule and zone filled in.
    page.get_by_role("link", name="explain this schedule").click()
    expect(page.get_by_role("heading", name="Explain a schedule")).to_be_visible()
    expect(page.get_by_label("Schedule", exact=True)).to_have_value("30 2 * 3,10 0")
    expect(page.get_by_label("Time zone")).to_have_value("Europe/Berlin")
    expect(page.locator(".schedule-words")).to_contain_text("Sunday")


def test_a_calendar_excluded_day_is_marked_among_the_next_instants(
    page: Page, ui_server: Belfry, tmp_path: Path
) -> None:
    holiday = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    ui_server.apply(
        tmp_path,
        f"""
        calendars:
          - {{name: holidays, timezone: UTC, dates: ["{holiday}"]}}
        jobs:
          - {{name: noon, group: ops, schedule: "0 12 * * *", exclude: [holidays], command: "true"}}
        """,
    )
    page.goto(ui_server.url + "/jobs/ops/noon")
    rows = page.get_by_role("region", name="Schedule").locator("tbody tr")
    # The holiday's noon is listed, marked skipped with the calendar that rules it out,
    # and is not counted among the ten runs.
    skipped = rows.filter(has=page.locator(".mark-skipped"))
    expect(skipped).to_have_count(1)
    expect(skipped).to_contain_text(f"{holiday} 12:00:00")
    expect(skipped).to_contain_text("calendar:holidays")
    expect(skipped.locator("td").first).to_have_text("\N{EN DASH}")
    expect(rows.filter(has_not=page.locator(".mark"))).to_have_count(10)


def test_unknown_jobs_are_not_found(page: Page, ui_server: Belfry) -> None:
    response = page.goto(ui_server.url + "/jobs/ops/nothing-here")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()


def test_run_now_starts_a_run_that_appears_in_the_ledger(
    page: Page, ui_server: Belfry, tmp_path: Path
) -> None:
    ui_server.apply(tmp_path, QUIET_JOB)
    page.goto(ui_server.url + "/jobs/ops/hello")
    page.get_by_role("button", name="Run now").click()
    started = page.locator("#flash").get_by_role("link", name=re.compile(r"run #\d+"))
    expect(started).to_be_visible()
    run_id = (started.get_attribute("href") or "").rsplit("/", 1)[-1]
    assert run_id.isdigit()
    # The ledger shows it at once and keeps itself up to date until it ends.
    row = page.locator("#ledger tbody tr").filter(has=page.locator(f"#ledger-run-{run_id}"))
    expect(row).to_contain_text("manual")
    expect(row.locator(".state")).to_have_text("succeeded", timeout=RUN_WAIT)
    expect(row.locator("td").nth(8)).to_have_text("0")  # exit code
    expect(page.locator(f"#ledger-run-{run_id}")).to_have_attribute("href", f"/runs/{run_id}")
    # A reload draws its duration and counts it in the success rate.
    page.reload()
    expect(page.locator(".rate")).to_contain_text("100%")
    expect(page.locator(".rate")).to_contain_text("1 of 1")
    expect(page.locator("svg.chart rect.bar-succeeded")).to_have_count(1)
    expect(page.locator("svg.chart title")).to_contain_text(f"run #{run_id}: succeeded")
    expect(page.locator("#chart-summary")).to_contain_text("1 succeeded")


def test_pausing_with_a_note_skips_occurrences_with_the_reason_and_resuming_undoes_it(
    page: Page, ui_server: Belfry, tmp_path: Path
) -> None:
    ui_server.apply(tmp_path, TICK_JOB)
    page.goto(ui_server.url + "/jobs/ops/tick")
    heading = page.get_by_role("heading", level=1)
    # Pausing takes two steps: the first opens the note and the question, and acts not.
    pause = page.get_by_role("button", name="Pause ops/tick")
    expect(page.get_by_label("Pause note")).to_be_hidden()
    first_step(page, "Pause…").click()
    expect(page.locator("#pause")).to_contain_text(
        "Pause ops/tick? Its occurrences are skipped until it is resumed."
    )
    page.get_by_label("Pause note").fill("deploy freeze <until 14:00>")
    expect(pause).to_be_visible()
    expect(heading).not_to_contain_text("paused")
    assert not ui_server.api("GET", "/api/v1/jobs/ops/tick")["paused"]
    # Changing one's mind: closing the question leaves the job running.
    first_step(page, "Pause…").click()
    expect(pause).to_be_hidden()
    assert not ui_server.api("GET", "/api/v1/jobs/ops/tick")["paused"]

    first_step(page, "Pause…").click()
    pause.click()
    expect(heading.locator(".badge-paused")).to_have_text("paused")
    expect(page.locator(".pause-note")).to_have_text("Pause note: deploy freeze <until 14:00>")
    expect(page.locator("#flash")).to_have_text("Paused.")
    # The files (applied above) do not say so: the page flags the change as drift.
    expect(page.locator("#job-drift")).to_contain_text("changed outside files")
    expect(page.locator("#job-drift")).to_contain_text("paused changed by admin")
    # The every-second job's next occurrences are recorded as skips saying why.
    skipped = ledger_row(page, "skipped", "paused")
    expect(skipped.first).to_be_visible(timeout=RUN_WAIT)
    # It is on the record for the API and the CLI too.
    reasons = {run["reason"] for run in ui_server.runs("ops/tick", "skipped")}
    assert "paused" in reasons

    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#flash")).to_have_text("Resumed.")
    expect(heading.locator(".badge-paused")).to_have_count(0)
    expect(page.locator(".pause-note")).to_have_count(0)
    expect(page.locator("#job-drift")).to_have_count(0)
    expect(first_step(page, "Pause…")).to_be_visible()
    # Runs again: the newest entry is soon no skip.
    newest = page.locator("#ledger tbody tr").first.locator(".state")
    expect(newest).not_to_have_text("skipped", timeout=RUN_WAIT)


def test_a_viewer_sees_no_actions_and_is_refused_them(
    browser: Browser, ui_server: Belfry, tmp_path: Path
) -> None:
    ui_server.apply(tmp_path, QUIET_JOB)
    ui_server.apply(tmp_path, DST_JOB)
    ui_server.api("POST", "/api/v1/users", json={"name": "vera", "password": "a-long-passphrase"})
    ui_server.api("PUT", "/api/v1/grants/vera/ops", json={"role": "viewer"})
    context = browser.new_context()
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    log_in(tab, ui_server, "vera", "a-long-passphrase")
    tab.goto(ui_server.url + "/jobs/ops/hello")
    expect(tab.get_by_role("heading", name="ops/hello")).to_be_visible()
    expect(tab.get_by_role("region", name="Schedule")).to_be_visible()
    for action in ("Run now", "Pause", "Resume"):
        expect(tab.get_by_role("button", name=action)).to_have_count(0)
    expect(tab.get_by_label("Pause note")).to_have_count(0)
    expect(first_step(tab, "Pause…")).to_have_count(0)
    expect(tab.get_by_role("link", name="Backfill…")).to_have_count(0)
    # The actions themselves refuse her, with a valid CSRF token and without.
    csrf = tab.locator("input[name=csrf_token]").first.input_value()
    for action in ("run", "pause", "resume"):
        url = f"{ui_server.url}/jobs/ops/hello/{action}"
        refused = tab.request.post(url, form={"csrf_token": csrf}, max_redirects=0)
        assert refused.status == 403, (action, refused.status)
        assert "Not allowed" in refused.text()
        with_htmx = tab.request.post(
            url, headers={"X-CSRF-Token": csrf, "HX-Request": "true"}, max_redirects=0
        )
        assert with_htmx.headers.get("hx-reswap") == "none"
        assert "Not done:" in with_htmx.text()
        assert tab.request.post(url, max_redirects=0).status == 403  # no CSRF token
    assert ui_server.runs("ops/hello") == []
    assert not ui_server.api("GET", "/api/v1/jobs/ops/hello")["paused"]
    # A group she may not read is not hers to see.
    response = tab.goto(ui_server.url + "/jobs/reports/sundays")
    assert response is not None and response.status == 403
    expect(tab.get_by_role("heading", name="Not allowed")).to_be_visible()
    context.close()


def test_the_job_page_and_its_actions_work_without_javascript(
    browser: Browser, ui_server: Belfry, tmp_path: Path
) -> None:
    ui_server.apply(tmp_path, QUIET_JOB)
    # 51 runs: one more than a page of the ledger.
    for _ in range(51):
        ui_server.api("POST", "/api/v1/jobs/ops/hello/run")
    first = min(run["id"] for run in ui_server.runs("ops/hello"))
    context = browser.new_context(java_script_enabled=False)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    log_in(tab, ui_server)
    tab.goto(ui_server.url + "/jobs/ops/hello")
    expect(tab.locator(".schedule-words")).to_be_visible()
    expect(tab.locator("#ledger tbody tr")).to_have_count(50)
    expect(tab.locator(f"#ledger-run-{first}")).to_have_count(0)
    tab.get_by_role("link", name="Older →").click()
    expect(tab).to_have_url(re.compile(r"/jobs/ops/hello\?before=\d+$"))
    expect(tab.locator("#ledger tbody tr")).to_have_count(1)
    expect(tab.locator(f"#ledger-run-{first}")).to_be_visible()
    tab.get_by_role("link", name="← Newest").click()
    expect(tab.locator("#ledger tbody tr")).to_have_count(50)
    # The action forms post and come back to the page, which says what happened.
    tab.get_by_role("button", name="Run now").click()
    expect(tab.locator("#flash").get_by_role("link", name=re.compile(r"run #\d+"))).to_be_visible()
    # Pause asks first without JavaScript too: the disclosure opens, nothing is paused yet.
    first_step(tab, "Pause…").click()
    tab.get_by_label("Pause note").fill("no script")
    assert not ui_server.api("GET", "/api/v1/jobs/ops/hello")["paused"]
    tab.get_by_role("button", name="Pause ops/hello").click()
    expect(tab.locator("#flash")).to_have_text("Paused.")
    expect(tab.locator(".pause-note")).to_have_text("Pause note: no script")
    tab.get_by_role("button", name="Resume").click()
    expect(tab.locator("#flash")).to_have_text("Resumed.")
    expect(tab.locator(".badge-paused")).to_have_count(0)
    # The explain page is a plain form.
    tab.goto(ui_server.url + "/explain")
    tab.get_by_label("Schedule", exact=True).fill("every 90m")
    tab.get_by_role("button", name="Explain").click()
    expect(tab.locator(".schedule-words")).to_be_visible()
    context.close()


def test_run_now_is_reachable_from_the_keyboard(
    page: Page, ui_server: Belfry, tmp_path: Path
) -> None:
    ui_server.apply(tmp_path, QUIET_JOB)
    page.goto(ui_server.url + "/jobs/ops/hello")
    button = page.get_by_role("button", name="Run now")  # its accessible name
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "run-now":
            break
    expect(button).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#flash").get_by_role("link", name=re.compile(r"run #\d+"))).to_be_visible()
    # htmx puts the focus back on the button it swapped in.
    expect(button).to_be_focused()


def test_the_explain_page_explains_and_says_what_is_wrong_next_to_the_field(
    page: Page, ui_server: Belfry
) -> None:
    # In the main navigation, from any page.
    page.goto(ui_server.url + "/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Explain").click()
    expect(page).to_have_url(ui_server.url + "/explain")
    current = page.get_by_role("navigation", name="Main").get_by_role("link", name="Explain")
    expect(current).to_have_attribute("aria-current", "page")
    page.get_by_label("Schedule", exact=True).fill("30 2 * * *")
    page.get_by_label("Time zone").fill("Europe/Berlin")
    page.get_by_label("How many").fill("3")
    page.get_by_label("Starting after").fill("2027-03-27T00:00:00Z")
    page.get_by_role("button", name="Explain").click()
    expect(page.locator(".schedule-words")).to_have_text("At 02:30 every day (Europe/Berlin)")
    rows = page.locator("table.instants tbody tr")
    expect(rows).to_have_count(3)
    # 2027-03-28 02:30 does not exist in Berlin: it runs at the end of the gap.
    moved = rows.filter(has=page.locator(".mark-moved"))
    expect(moved).to_contain_text("2027-03-28 01:00:00")
    expect(moved).to_contain_text("DST gap")
    # A bad schedule: the message next to its field, which says it is invalid.
    page.get_by_label("Schedule", exact=True).fill("30 2 * * funday")
    page.get_by_role("button", name="Explain").click()
    field = page.get_by_label("Schedule", exact=True)
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_accessible_description(re.compile("day-of-week"))
    expect(page.locator("table.instants")).to_have_count(0)
    # A misspelt zone: the message next to the zone, with a suggestion.
    page.get_by_label("Schedule", exact=True).fill("@daily")
    page.get_by_label("Time zone").fill("Europe/Berln")
    page.get_by_role("button", name="Explain").click()
    expect(page.locator("#tz-error")).to_contain_text("did you mean Europe/Berlin?")
    expect(page.get_by_label("Time zone")).to_have_accessible_description(
        re.compile("unknown time zone")
    )


def test_the_explain_page_needs_a_login(ui_server: Belfry) -> None:
    response = httpx.get(ui_server.url + "/explain?schedule=@daily")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=/explain")


# The page's own arithmetic, without a browser.


def _run(run_id: int, state: RunState, seconds: float | None) -> RunRecord:
    start = datetime(2027, 1, 1, tzinfo=UTC)
    return RunRecord(
        id=run_id,
        job_id=1,
        job="ops/x",
        scheduled_for=start,
        attempt=1,
        trigger=Trigger.SCHEDULE,
        state=state,
        reason=None,
        not_before=start,
        exit_code=None,
        target=None,
        worker=None,
        host=None,
        pid=None,
        kill_requested=False,
        created_at=start,
        claimed_at=None,
        started_at=None if seconds is None else start,
        finished_at=None if seconds is None else start + timedelta(seconds=seconds),
    )


def test_the_duration_chart_draws_oldest_first_scaled_to_the_longest() -> None:
    runs = [  # newest first, as the store lists them
        _run(4, RunState.FAILED, 4.0),
        _run(3, RunState.LOST, None),  # never started: no duration to draw
        _run(2, RunState.SUCCEEDED, 0.0),
        _run(1, RunState.SUCCEEDED, 2.0),
    ]
    chart = pages._duration_chart(runs)
    assert [bar.run.id for bar in chart.bars] == [1, 2, 4]
    assert chart.bars[2].height == 118 and chart.bars[0].height == 59
    assert chart.bars[1].height == 2  # an instant run still shows
    assert chart.summary == (
        "The last 3 finished runs (1 failed, 2 succeeded) took 2.0s at the median and "
        "4.0s at the longest (run #4)."
    )
    assert pages._duration_chart([]).bars == []
    rate = pages._success_rate(runs)
    assert (rate.succeeded, rate.finished, rate.percent) == (2, 4, 50)
    assert pages._success_rate([]).percent is None


def test_the_explain_form_says_what_is_wrong_with_each_field() -> None:
    now = datetime(2027, 3, 27, tzinfo=UTC)
    explanation, errors = pages._explain_form("30 2 * * *", "Europe/Berlin", "3", "", now)
    assert errors == {} and explanation is not None
    assert [item.status for item in explanation.occurrences] == ["runs", "moved", "runs"]
    explanation, errors = pages._explain_form("30 2 * * x", "Europe/Berln", "0", "soon", now)
    assert explanation is None
    assert set(errors) == {"schedule", "tz", "n", "from"}
    assert "did you mean Europe/Berlin?" in errors["tz"]
    # A job's list of schedules, as its page links it.
    explanation, errors = pages._explain_form("@daily | every 7h", "UTC", "2", "", now)
    assert errors == {} and explanation is not None
    assert explanation.description == "At 00:00 every day; Every 7 hours (UTC)"
    # No offset: UTC, as ``belfry explain --from``.
    explanation, _ = pages._explain_form("every 1h", "UTC", "1", "2027-01-01T10:30", now)
    assert explanation is not None
    assert explanation.instants == [datetime(2027, 1, 1, 11, 0, tzinfo=UTC)]  # on the hour


def test_a_chained_job_links_the_jobs_it_runs_after_and_they_link_back(
    page: Page, ui_server: Belfry, tmp_path: Path
) -> None:
    ui_server.apply(
        tmp_path,
        """
        jobs:
          - {name: extract, group: etl, schedule: "@yearly", command: "true"}
          - {name: load, group: etl, after: {jobs: [extract], on: failure}, command: "true"}
        """,
    )
    page.goto(ui_server.url + "/jobs/etl/load")
    expect(page.locator("#runs-after")).to_contain_text("after etl/extract fails")
    expect(page.locator(".schedule-words")).to_have_text("Runs after etl/extract fails")
    page.locator("#runs-after").get_by_role("link", name="etl/extract").click()
    page.wait_for_url("**/jobs/etl/extract")
    expect(page.locator("#followed-by")).to_have_text("etl/load")
    page.goto(ui_server.url + "/jobs?group=etl")
    expect(page.locator("tr", has_text="etl/load")).to_contain_text("after etl/extract fails")
