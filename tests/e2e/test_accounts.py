"""Accounts on a real server: the first admin, logins and their throttle, users and grants
through the CLI, tokens that expire or are revoked, disabled users, the audit trail."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Belfry, start_server

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"


@pytest.fixture
def server(sqlite_url: str, tmp_path: Path) -> Iterator[Belfry]:
    belfry = start_server(tmp_path / "home", sqlite_url, "--no-worker")
    try:
        yield belfry
    finally:
        belfry.stop()


def _login(server: Belfry, name: str, password: str) -> httpx.Response:
    return httpx.post(
        server.url + "/api/v1/login", json={"name": name, "password": password}, timeout=30
    )


def _token_of(server: Belfry, name: str, **body: Any) -> str:
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        login = browser.post("/api/v1/login", json={"name": name, "password": PASSWORD})
        assert login.status_code == 200, login.text
        made = browser.post(
            "/api/v1/tokens",
            json={"name": "cli", **body},
            headers={"X-CSRF-Token": login.json()["csrf_token"]},
        )
        assert made.status_code == 201, made.text
        token: str = made.json()["token"]
        return token


def _get(server: Belfry, path: str, token: str) -> httpx.Response:
    return httpx.get(server.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_the_first_admin_gets_a_random_password_in_a_private_file(server: Belfry) -> None:
    path = server.home / "admin-password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    password = path.read_text().strip()
    assert len(password) >= 20
    assert _login(server, "admin", "admin").status_code == 401  # no default password
    me = _login(server, "admin", password)
    assert me.status_code == 200
    assert (me.json()["name"], me.json()["global_admin"]) == ("admin", True)
    cookie = me.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    # A fresh server refuses anonymous calls.
    assert httpx.get(server.url + "/api/v1/jobs", timeout=30).status_code == 401


def test_failed_logins_are_throttled_and_audited(server: Belfry) -> None:
    answers = [_login(server, "admin", f"wrong-{n}").status_code for n in range(5)]
    assert answers == [401] * 5
    throttled = _login(server, "admin", (server.home / "admin-password").read_text().strip())
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) > 0
    failed = server.api("GET", "/api/v1/audit", params={"action": "login.failed"})
    assert len(failed) == 5
    assert {(entry["actor"], entry["address"]) for entry in failed} == {("admin", "127.0.0.1")}


def test_users_and_grants_through_the_cli_and_what_their_tokens_may_do(
    server: Belfry, tmp_path: Path
) -> None:
    created = server.cli("users", "create", "alice", "--password-stdin", input_text=PASSWORD)
    assert created.returncode == 0, created.stderr
    assert server.cli("grants", "add", "alice", "billing", "editor").returncode == 0
    bad = server.cli("grants", "add", "alice", "billing", "owner")
    assert bad.returncode == 2 and "role: must be" in bad.stderr
    listed = json.loads(server.cli("grants", "list", "--output", "json").stdout)
    assert listed == [{"user": "alice", "group": "billing", "role": "editor"}]

    token = _token_of(server, "alice")
    env = {"BELFRY_TOKEN": token}
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(
        "jobs:\n  - {name: invoices, group: billing, schedule: '@daily', command: 'true'}\n"
    )
    assert server.cli("apply", "-f", str(jobs), env=env).returncode == 0
    jobs.write_text(
        "jobs:\n  - {name: invoices, group: billing, schedule: '@hourly', command: 'true'}\n"
    )
    assert server.cli("apply", "-f", str(jobs), env=env).returncode == 0
    other = tmp_path / "other.yaml"
    other.write_text("jobs:\n  - {name: x, group: reports, schedule: '@daily', command: 'true'}\n")
    refused = server.cli("apply", "-f", str(other), env=env)
    assert refused.returncode == 1
    assert "may not edit group 'reports' (needs editor)" in refused.stderr
    assert server.cli("users", "list", env=env).returncode == 1  # not an admin

    # The audit trail has who did what, from where, with before and after.
    trail = json.loads(server.cli("audit", "--action", "job", "--output", "json").stdout)
    update = next(entry for entry in trail if entry["action"] == "job.update")
    assert (update["actor"], update["address"], update["group"]) == (
        "alice",
        "127.0.0.1",
        "billing",
    )
    assert (update["before"]["schedule"], update["after"]["schedule"]) == ("@daily", "@hourly")
    assert any(entry["action"] == "job.create" for entry in trail)
    table = server.cli("audit").stdout
    assert "grant.set" in table and "user.create" in table

    # Disabled: the token is refused at once; enabled again, it works again.
    assert server.cli("users", "disable", "alice").returncode == 0
    assert _get(server, "/api/v1/jobs", token).status_code == 401
    assert _login(server, "alice", PASSWORD).status_code == 401
    assert server.cli("users", "enable", "alice").returncode == 0
    assert _get(server, "/api/v1/jobs", token).status_code == 200
    # Deleted: gone with its grants and tokens.
    assert server.cli("users", "delete", "alice").returncode == 0
    assert _get(server, "/api/v1/jobs", token).status_code == 401
    assert json.loads(server.cli("grants", "list", "--output", "json").stdout) == []


def test_tokens_expire_and_can_be_revoked(server: Belfry) -> None:
    server.api("POST", "/api/v1/users", json={"name": "bob", "password": PASSWORD})
    short = _token_of(server, "bob", expires_in_days=1.5 / 86400)  # 1.5 s
    lasting = _token_of(server, "bob")
    assert _get(server, "/api/v1/me", short).status_code == 200
    time.sleep(2)
    assert _get(server, "/api/v1/me", short).status_code == 401
    mine = _get(server, "/api/v1/tokens", lasting).json()
    assert len(mine) == 2 and all(token["user"] == "bob" for token in mine)
    assert all("token" not in token for token in mine)  # secrets are never listed
    newest = max(token["id"] for token in mine)
    revoked = httpx.delete(
        server.url + f"/api/v1/tokens/{newest}",
        headers={"Authorization": f"Bearer {lasting}"},
        timeout=30,
    )
    assert revoked.status_code == 204
    assert _get(server, "/api/v1/me", lasting).status_code == 401
    actions = [entry["action"] for entry in server.api("GET", "/api/v1/audit")]
    assert "token.revoke" in actions and actions.count("token.create") == 2


def test_the_last_global_admin_cannot_be_removed(server: Belfry) -> None:
    answer = httpx.delete(
        server.url + "/api/v1/users/admin",
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=30,
    )
    assert answer.status_code == 409
    assert "last global admin" in answer.json()["detail"]


def test_token_commands_through_the_server(server: Belfry) -> None:
    # An admin token (made on the server host) has no user to act as.
    refused = server.cli("token", "create")
    assert refused.returncode == 2 and "log in as a user" in refused.stderr
    worker = json.loads(
        server.cli(
            "token", "create", "--role", "worker", "--pool", "etl", "--output", "json"
        ).stdout
    )
    assert (worker["role"], worker["pools"]) == ("worker", ["etl"])
    server.api("POST", "/api/v1/users", json={"name": "erin", "password": PASSWORD})
    erin = _token_of(server, "erin")
    made = server.cli(
        "token", "create", "--expires-in-days", "7", "--output", "json", env={"BELFRY_TOKEN": erin}
    )
    assert made.returncode == 0, made.stderr
    second = json.loads(made.stdout)
    assert second["user"] == "erin" and second["expires_at"]
    assert _get(server, "/api/v1/me", second["token"]).json()["name"] == "erin"
    listed = json.loads(
        server.cli("token", "list", "--output", "json", env={"BELFRY_TOKEN": erin}).stdout
    )
    assert sorted(t["id"] for t in listed) == sorted(t["id"] for t in listed if t["user"] == "erin")
    assert len(listed) == 2
    revoked = server.cli("token", "revoke", str(second["id"]), env={"BELFRY_TOKEN": erin})
    assert revoked.returncode == 0, revoked.stderr
    assert _get(server, "/api/v1/me", second["token"]).status_code == 401
    # Someone else's token is none of erin's business; the admin sees them all.
    other = server.cli("token", "revoke", str(worker["id"]), env={"BELFRY_TOKEN": erin})
    assert other.returncode == 1 and "no such token" in other.stderr
    every = json.loads(server.cli("token", "list", "--output", "json").stdout)
    assert {t["role"] for t in every} == {"admin", "worker", "user"}
