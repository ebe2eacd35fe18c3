"""The operations and administration pages: workers, servers, audit, calendars, alerts,
tokens; what a viewer of one group sees of them; who may send a channel test."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from playwright.sync_api import Browser, BrowserContext, Page, expect
from pytest_httpserver import HTTPServer

from belfry import __version__
from belfry.core.protocol import PROTOCOL_VERSION
from tests.e2e.conftest import Belfry
from tests.ui.conftest import first_step, log_in

VIEWER = ("vic", "vic-password-123")


def _channel_and_jobs(hook: HTTPServer, holiday: str) -> str:
    return f"""\
        channels:
          - name: hook
            webhook: {{url: "{hook.url_for("/hook")}", secret: not-shown-anywhere}}
        calendars:
          - name: holidays
            timezone: Europe/Berlin
            dates: ["{holiday}"]
        jobs:
          - {{name: fails, group: team-a, schedule: "@daily", command: "exit 1", notify: [hook]}}
          - {{name: fails, group: team-b, schedule: "@daily", command: "exit 2", notify: [hook]}}
          - name: report
            group: team-a
            schedule: "0 6 * * *"
            timezone: Europe/Berlin
            exclude: [holidays]
            command: echo report
        """


def _setup(server: Belfry, tmp_path: Path, hook: HTTPServer) -> str:
    """The channel, calendar and jobs; returns the holiday (a date 10 days from now)."""
    hook.expect_request("/hook", method="POST").respond_with_data("ok")
    holiday = (datetime.now(UTC) + timedelta(days=10)).date().isoformat()
    server.apply(tmp_path, _channel_and_jobs(hook, holiday))
    return holiday


def _viewer_tab(browser: Browser, server: Belfry) -> tuple[BrowserContext, Page]:
    """A tab logged in as a viewer of group team-a only."""
    name, password = VIEWER
    server.api("POST", "/api/v1/users", json={"name": name, "password": password})
    server.api("PUT", f"/api/v1/grants/{name}/team-a", json={"role": "viewer"})
    context = browser.new_context()
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    log_in(tab, server, name, password)
    return context, tab


def test_every_admin_page_renders_for_an_admin(
    page: Page, ui_server: Belfry, tmp_path: Path, httpserver: HTTPServer
) -> None:
    holiday = _setup(ui_server, tmp_path, httpserver)
    pages = {
        "/workers": "Workers",
        "/cluster": "Servers",
        "/audit": "Audit log",
        "/calendars": "Calendars",
        "/calendars/holidays": "holidays",
        "/channels": "Alerts",
        "/channels/hook": "hook",
        "/deliveries": "Deliveries",
        "/tokens": "API tokens",
        "/apply": "Apply job files",
    }
    for path, title in pages.items():
        response = page.goto(ui_server.url + path)
        assert response is not None and response.status == 200, path
        expect(page.get_by_role("heading", level=1)).to_contain_text(title)
        assert "not-shown-anywhere" not in page.content(), path

    page.goto(ui_server.url + "/workers")
    worker = page.locator("tbody tr", has_text="embedded")
    expect(worker).to_contain_text("active")
    expect(worker).to_contain_text("default")
    page.goto(ui_server.url + "/cluster")
    expect(page.locator("tbody tr")).to_contain_text("leader")
    expect(page.get_by_role("heading", name=re.compile("This server"))).to_contain_text("ready")

    page.goto(ui_server.url + "/calendars/holidays")
    day = datetime.fromisoformat(holiday).strftime("%a %Y-%m-%d")
    expect(page.locator("tbody tr").first).to_contain_text(day)
    expect(page.locator("tbody tr").first).to_contain_text("1d")
    expect(page.get_by_role("link", name="team-a/report")).to_be_visible()

    # The audit log filters as you type (htmx, the URL keeps the filter) and pages back.
    page.goto(ui_server.url + "/audit")
    page.get_by_label("Action").fill("calendar")
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody tr")).to_contain_text("calendar.create")
    expect(page).to_have_url(re.compile(r"action=calendar"))
    bulk = "\n".join(
        f"  - {{name: job-{n:02d}, group: bulk, schedule: '@daily', command: 'true'}}"
        for n in range(55)
    )
    ui_server.apply(tmp_path, "jobs:\n" + bulk + "\n")
    page.goto(ui_server.url + "/audit?group=bulk")
    expect(page.locator("tbody tr")).to_have_count(50)
    page.get_by_role("link", name="Older →").click()
    expect(page.locator("tbody tr")).to_have_count(5)
    expect(page.locator("tbody tr").last).to_contain_text("bulk/job-00")
    expect(page.get_by_role("link", name="Older →")).to_have_count(0)
    page.get_by_role("link", name="← Newest").click()
    expect(page.locator("tbody tr")).to_have_count(50)


def test_a_viewer_of_one_group_sees_only_its_audit_entries_and_deliveries(
    browser: Browser, ui_server: Belfry, tmp_path: Path, httpserver: HTTPServer
) -> None:
    _setup(ui_server, tmp_path, httpserver)
    for group in ("team-a", "team-b"):
        ui_server.api("POST", f"/api/v1/jobs/{group}/fails/run")
    ui_server.wait_for(
        lambda: len(ui_server.api("GET", "/api/v1/deliveries")) >= 2,
        what="a failure alert for each job",
    )
    context, tab = _viewer_tab(browser, ui_server)

    tab.goto(ui_server.url + "/audit")
    entries = tab.locator("tbody tr")
    expect(entries.filter(has_text="team-a/fails").first).to_be_visible()
    expect(entries.filter(has_text="team-b")).to_have_count(0)
    # Entries about no group (users, channels, calendars) are for global admins.
    expect(entries.filter(has_text="channel.create")).to_have_count(0)

    tab.goto(ui_server.url + "/deliveries")
    deliveries = tab.locator("tbody tr")
    expect(deliveries).to_have_count(1)
    expect(deliveries).to_contain_text("team-a/fails: failed with exit code 1")
    tab.goto(ui_server.url + "/channels")
    expect(tab.locator("section.channel tbody tr")).to_have_count(1)
    expect(tab.locator("section.channel")).not_to_contain_text("team-b")

    response = tab.goto(ui_server.url + "/deliveries?job=team-b/fails")
    assert response is not None and response.status == 403
    expect(tab.get_by_role("alert")).to_contain_text("may not read group 'team-b'")
    context.close()


def test_a_token_made_on_the_page_is_shown_once_works_and_can_be_revoked(
    page: Page, ui_server: Belfry
) -> None:
    page.goto(ui_server.url + "/tokens")
    page.get_by_label("Name", exact=True).fill("ci-deploy")
    page.get_by_label("Expires in (days)", exact=True).fill("30")
    page.get_by_role("button", name="Create token").click()
    secret = page.get_by_label("Token secret").input_value()
    assert secret
    me = httpx.get(
        ui_server.url + "/api/v1/me", headers={"Authorization": f"Bearer {secret}"}, timeout=10
    )
    assert me.status_code == 200 and me.json()["name"] == "admin"

    page.goto(ui_server.url + "/tokens")  # shown once: never again
    assert secret not in page.content()
    row = page.locator("tbody tr", has_text="ci-deploy")
    expect(row).to_contain_text("active")
    expect(row).to_contain_text("in 29d")

    # Revoking takes a second, explicit step; from the keyboard too.
    first_step(row, "Revoke…").focus()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Revoke ci-deploy")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("is revoked")
    expect(page.locator("tbody tr", has_text="ci-deploy")).to_contain_text("revoked")
    refused = httpx.get(
        ui_server.url + "/api/v1/me", headers={"Authorization": f"Bearer {secret}"}, timeout=10
    )
    assert refused.status_code == 401
    actions = [entry["action"] for entry in ui_server.api("GET", "/api/v1/audit?action=token")]
    assert actions == ["token.revoke", "token.create"]

    # A bad expiry is said next to the form, and makes no token.
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value") or ""
    bad = page.request.post(
        ui_server.url + "/tokens",
        form={"csrf_token": csrf, "name": "x", "expires_in_days": "0"},
    )
    assert bad.status == 422
    assert "expires in (days): Input should be greater than 0" in bad.text()


def _hello(server: Belfry, token: str, pools: list[str]) -> httpx.Response:
    """A worker's hello, as ``belfry worker`` says it, with ``token``."""
    body = {
        "name": "app-1",
        "host": "app-1.example",
        "pools": pools,
        "version": __version__,
        "protocol": PROTOCOL_VERSION,
    }
    return httpx.post(
        server.url + "/api/v1/workers/hello",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def test_a_global_admin_makes_a_worker_token_for_pools_on_the_tokens_page(
    page: Page, browser: Browser, ui_server: Belfry
) -> None:
    page.goto(ui_server.url + "/tokens")
    form = page.get_by_role("region", name="New worker token", exact=True)
    form.get_by_label("Worker token name").fill("app-hosts")
    form.get_by_label("Pools").fill("billing, reports billing")
    form.get_by_role("button", name="Create worker token").click()
    expect(
        page.get_by_role("heading", name="New worker token “app-hosts” for billing, reports")
    ).to_be_visible()
    secret = page.get_by_label("Token secret").input_value()
    assert secret.startswith("bfy_")
    expect(page.get_by_text("--pool billing --pool reports")).to_be_visible()
    # The worker endpoint takes it for its pools, and for them only.
    welcome = _hello(ui_server, secret, ["billing"])
    assert welcome.status_code == 200, welcome.text
    assert welcome.json()["name"] == "app-1"
    assert _hello(ui_server, secret, ["default"]).status_code == 403
    [made] = [t for t in ui_server.api("GET", "/api/v1/tokens") if t["name"] == "app-hosts"]
    assert (made["role"], made["pools"], made["user"]) == ("worker", ["billing", "reports"], None)

    # Listed (never its secret) with its pools, and revoked in two steps like the others.
    page.goto(ui_server.url + "/tokens")
    assert secret not in page.content()
    row = page.locator("tbody tr", has_text="app-hosts")
    expect(row).to_contain_text("billing, reports")
    first_step(row, "Revoke…").click()
    row.get_by_role("button", name="Revoke app-hosts").click()
    expect(page.locator("tbody tr", has_text="app-hosts")).to_contain_text("revoked")
    assert _hello(ui_server, secret, ["billing"]).status_code == 401

    # A pool that is not one is said next to the form, and makes no token.
    form = page.get_by_role("region", name="New worker token", exact=True)
    form.get_by_label("Worker token name").fill("bad")
    form.get_by_label("Pools").fill("Bad Pool")
    form.get_by_role("button", name="Create worker token").click()
    expect(page.get_by_role("alert")).to_contain_text("'Bad' is not a pool name")
    assert not [t for t in ui_server.api("GET", "/api/v1/tokens") if t["name"] == "bad"]

    # Not for anyone else: no form, and the action refuses them.
    context, tab = _viewer_tab(browser, ui_server)
    tab.goto(ui_server.url + "/tokens")
    expect(tab.get_by_role("heading", name="Worker tokens")).to_have_count(0)
    csrf = tab.locator("input[name=csrf_token]").first.get_attribute("value") or ""
    refused = tab.request.post(
        ui_server.url + "/tokens/worker",
        form={"csrf_token": csrf, "name": "sneaky", "pools": "billing"},
    )
    assert refused.status == 403
    assert "vic is not a global admin" in refused.text()
    assert not [t for t in ui_server.api("GET", "/api/v1/tokens") if t["name"] == "sneaky"]
    context.close()


def test_only_global_admins_send_a_channel_test(
    page: Page, browser: Browser, ui_server: Belfry, tmp_path: Path, httpserver: HTTPServer
) -> None:
    _setup(ui_server, tmp_path, httpserver)
    page.goto(ui_server.url + "/channels/hook")
    page.get_by_role("button", name="Send a test alert through hook").click()
    expect(page.get_by_role("status")).to_contain_text("Test alert sent through hook.")
    expect(page.locator("tbody tr").first).to_contain_text("belfry/test: a test of channel hook")
    assert len(httpserver.log) == 1

    context, tab = _viewer_tab(browser, ui_server)
    tab.goto(ui_server.url + "/channels/hook")
    expect(tab.get_by_role("button", name=re.compile("test alert"))).to_have_count(0)
    # Even with the session's own CSRF token, the action is refused.
    csrf = tab.locator("input[name=csrf_token]").first.get_attribute("value") or ""
    refused = tab.request.post(
        ui_server.url + "/channels/hook/test", form={"csrf_token": csrf}, max_redirects=0
    )
    assert refused.status == 403
    assert "vic is not a global admin" in refused.text()
    assert len(httpserver.log) == 1
    tests = ui_server.api("GET", "/api/v1/audit", params={"action": "channel.test"})
    assert [entry["actor"] for entry in tests] == ["admin"]
    context.close()
