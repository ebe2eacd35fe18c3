"""Accounts on a real server: the first admin, logins and their throttle, users and grants
through the CLI, tokens that expire or are revoked, disabled users, the audit trail of
every action, admin tokens made on the server host, secrets stored only as hashes."""

from __future__ import annotations

import json
import sqlite3
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
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


def test_the_first_admin_gets_a_random_password_in_a_private_file(
    server: Belfry, sqlite_url: str
) -> None:
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

    # The first start prints the password and token that are in the files, once: a restart
    # on the same database prints neither (its log is read once it stopped and flushed).
    token = server.token
    server.stop()
    first_start = server.log_path.read_text()
    assert f"first login: admin / {password}" in first_start
    assert token in first_start
    again = start_server(server.home, sqlite_url, "--no-worker")
    try:
        assert _login(again, "admin", password).status_code == 200  # the same admin
    finally:
        again.stop()
    restart = again.log_path.read_text()
    assert f"serving at {again.url}" in restart
    assert password not in restart and token not in restart
    assert "first login" not in restart and "first admin token" not in restart


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


def test_every_action_is_audited_with_its_actor_target_and_address(
    server: Belfry, tmp_path: Path
) -> None:
    ops = {"BELFRY_TOKEN": server.user_token("ops", {}, PASSWORD)}
    server.api("PATCH", "/api/v1/users/ops", json={"global_admin": True})
    server.api("POST", "/api/v1/users", json={"name": "leaver", "password": PASSWORD})
    server.apply(
        tmp_path,
        """
        calendars:
          - {name: old-holidays, timezone: UTC, dates: [2027-12-24]}
        channels:
          - {name: old-pager, webhook: {url: "http://127.0.0.1:9/hook"}}
        jobs:
          - {name: invoices, group: billing, schedule: "@hourly", command: "true"}
        """,
    )

    def as_ops(*args: str, input_text: str | None = None) -> str:
        done = server.cli(*args, env=ops, input_text=input_text)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    # The server has no worker: the triggered run waits, and the kill cancels it.
    run_id = json.loads(as_ops("run", "billing/invoices", "--output", "json"))["id"]
    as_ops("kill", str(run_id))
    as_ops("pause", "billing/invoices", "--note", "audit")
    as_ops("resume", "billing/invoices")
    now = datetime.now(UTC)
    as_ops(
        "backfill",
        "billing/invoices",
        "--from",
        (now - timedelta(hours=3)).isoformat(),
        "--to",
        (now - timedelta(hours=1)).isoformat(),
    )
    as_ops("maintenance", "on", "--note", "audit")
    as_ops("maintenance", "off")
    as_ops("users", "password", "leaver", "--password-stdin", input_text=PASSWORD + "!")
    as_ops("users", "delete", "leaver")
    as_ops("calendar", "delete", "old-holidays")
    as_ops("channel", "delete", "old-pager")
    made = json.loads(as_ops("token", "create", "--name", "short-lived", "--output", "json"))
    as_ops("token", "revoke", str(made["id"]))

    trail = json.loads(
        server.cli("audit", "--actor", "ops", "--limit", "1000", "--output", "json").stdout
    )
    audited = {
        (entry["action"], entry["target"])
        for entry in trail
        if (entry["actor"], entry["address"]) == ("ops", "127.0.0.1")
    }
    expected = {
        ("job.run", "billing/invoices"),
        ("run.kill", f"run {run_id} (billing/invoices)"),
        ("job.pause", "billing/invoices"),
        ("job.resume", "billing/invoices"),
        ("job.backfill", "billing/invoices"),
        ("maintenance.on", "*"),
        ("maintenance.off", "*"),
        ("user.password", "leaver"),
        ("user.delete", "leaver"),
        ("calendar.delete", "old-holidays"),
        ("channel.delete", "old-pager"),
        ("token.create", f"token {made['id']} (short-lived)"),
        ("token.revoke", f"token {made['id']}"),
    }
    missing = expected - audited
    assert not missing, f"not audited as ops from 127.0.0.1: {sorted(missing)}"


def test_an_admin_token_made_on_the_server_host_works_and_no_secret_is_stored_in_clear(
    server: Belfry, sqlite_url: str
) -> None:
    made = server.cli("token", "create", "--db", sqlite_url, "--name", "rescue", "-o", "json")
    assert made.returncode == 0, made.stderr
    rescue = json.loads(made.stdout)
    assert rescue["role"] == "admin"
    # Only a global admin may create users.
    created = httpx.post(
        server.url + "/api/v1/users",
        json={"name": "carol", "password": PASSWORD},
        headers={"Authorization": f"Bearer {rescue['token']}"},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    listed = server.cli("users", "list", "-o", "json", env={"BELFRY_TOKEN": rescue["token"]})
    assert "carol" in [user["name"] for user in json.loads(listed.stdout)]
    # Made past the API, it is audited all the same.
    [entry] = server.api("GET", "/api/v1/audit", params={"action": "token.create"})
    assert (entry["actor"], entry["target"]) == ("belfry", f"token {rescue['id']} (rescue)")
    assert entry["after"]["role"] == "admin"

    # The database keeps hashes only: of this token, the first admin's, a user's, and of
    # the passwords.
    user_token = server.user_token("dora", {}, PASSWORD)
    admin_password = (server.home / "admin-password").read_text().strip()
    tokens = [rescue["token"], server.token, user_token]
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as database:
        # Every table and column: tokens, users, sessions, the audit log.
        everything = "\n".join(database.iterdump())
        assert len(database.execute("SELECT * FROM tokens").fetchall()) == len(tokens)
        hashes = dict(database.execute("SELECT name, password_hash FROM users").fetchall())
    assert all(token.startswith("bfy_") for token in tokens)
    for secret in [*(token.removeprefix("bfy_") for token in tokens), PASSWORD, admin_password]:
        assert secret not in everything
    assert set(hashes) == {"admin", "carol", "dora"}
    assert all(stored.startswith("$argon2") for stored in hashes.values()), hashes
