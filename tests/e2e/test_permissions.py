"""Roles per group against every endpoint of a real server: 401 / 403 / allowed, all of them.

Users log in (a real session, with its CSRF token) and make their own tokens; each then
calls every route of the API, and the answer must be what their role allows. A route
missing from the matrix fails the test, so a new endpoint cannot go unchecked.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from belfry.core.protocol import PROTOCOL_VERSION
from tests.e2e.conftest import BELFRY, Belfry, start_server

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"
JOB_A = {"name": "job", "group": "a", "schedule": "@yearly", "command": "echo hi"}
JOB_B = {"name": "job", "group": "b", "schedule": "@yearly", "command": "echo hi"}
CALENDAR = {"name": "cal", "dates": ["2027-12-25"]}
# Nothing listens on port 1: a test alert fails fast (and is still a 200 with its outcome).
CHANNEL = {"name": "hook", "webhook": {"url": "http://127.0.0.1:1/hook", "secret": "s"}}
# Who holds which role (global: a global admin user; outsider: a viewer of group b only).
ROLES: dict[str, dict[str, str]] = {
    "viewer": {"a": "viewer"},
    "operator": {"a": "operator"},
    "editor": {"a": "editor"},
    "group-admin": {"a": "admin"},
    "outsider": {"b": "viewer"},
    "global": {},
}
RANK = {"viewer": 0, "operator": 1, "editor": 2, "admin": 3}
LEAST_ROLE = {"read": "viewer", "operate": "operator", "edit": "editor", "administer": "admin"}


@dataclass
class Caller:
    name: str
    headers: dict[str, str] = field(default_factory=dict)

    def allowed(self, rule: str) -> bool:
        if self.name == "anonymous":
            return False
        if rule == "caller":
            return True
        if self.name == "worker":
            return rule == "worker"
        if self.name == "global" or rule == "any":
            return True
        if rule in ("global", "worker"):
            return False
        if rule == "group-admin":
            return "admin" in ROLES[self.name].values()
        permission, group = rule.split(":")
        held = ROLES[self.name].get(group)
        return held is not None and RANK[held] >= RANK[LEAST_ROLE[permission]]


@dataclass
class Call:
    method: str
    template: str  # as in the OpenAPI document
    rule: str  # who may: any | caller | global | group-admin | worker | ROLE:GROUP
    path: str = ""
    body: Any = None
    setup: Callable[[], None] | None = None
    denied: int = 403  # what a caller the rule leaves out gets


@pytest.fixture
def server(sqlite_url: str, tmp_path: Path) -> Iterator[Belfry]:
    belfry = start_server(tmp_path / "home", sqlite_url, "--no-worker")
    try:
        yield belfry
    finally:
        belfry.stop()


def _login_token(server: Belfry, user: str) -> str:
    """Log in as ``user`` and make a token with the session (CSRF header included)."""
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        login = browser.post("/api/v1/login", json={"name": user, "password": PASSWORD})
        assert login.status_code == 200, login.text
        csrf = login.json()["csrf_token"]
        # The cookie alone is not enough to change anything.
        refused = browser.post("/api/v1/tokens", json={"name": "cli"})
        assert refused.status_code == 403, refused.text
        made = browser.post("/api/v1/tokens", json={"name": "cli"}, headers={"X-CSRF-Token": csrf})
        assert made.status_code == 201, made.text
        token: str = made.json()["token"]
        return token


def _worker_token(server: Belfry, db_url: str) -> str:
    done = subprocess.run(
        [
            BELFRY,
            "token",
            "create",
            "--db",
            db_url,
            "--role",
            "worker",
            "--pool",
            "default",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=server.env(),
    )
    assert done.returncode == 0, done.stderr
    token: str = json.loads(done.stdout)["token"]
    return token


# About 700 requests (every route, nine callers, setups): 70-110 s on a busy 2-core
# machine, past the suite's 120 s per test. The limit is there to catch a hang.
@pytest.mark.timeout(400)
def test_every_endpoint_answers_each_role_as_it_should(server: Belfry, sqlite_url: str) -> None:
    admin = server.api
    for user, grants in ROLES.items():
        admin(
            "POST",
            "/api/v1/users",
            json={"name": user, "password": PASSWORD, "global_admin": user == "global"},
        )
        for group, role in grants.items():
            admin("PUT", f"/api/v1/grants/{user}/{group}", json={"role": role})
    callers = [Caller("anonymous"), Caller("worker", _bearer(_worker_token(server, sqlite_url)))]
    callers += [Caller(user, _bearer(_login_token(server, user))) for user in ROLES]

    def seed() -> None:
        admin(
            "POST",
            "/api/v1/apply",
            json={"jobs": [JOB_A, JOB_B], "calendars": [CALENDAR], "channels": [CHANNEL]},
        )

    def victim(grant: bool = False) -> Callable[[], None]:
        def make() -> None:
            httpx.delete(server.url + "/api/v1/users/victim", headers=_bearer(server.token))
            admin("POST", "/api/v1/users", json={"name": "victim", "password": PASSWORD})
            if grant:
                admin("PUT", "/api/v1/grants/victim/a", json={"role": "viewer"})

        return make

    def spare_calendar() -> None:
        admin("PUT", "/api/v1/calendars/spare", json={"name": "spare", "dates": ["2028-01-01"]})

    def spare_channel() -> None:
        admin("PUT", "/api/v1/channels/spare", json={**CHANNEL, "name": "spare"})

    seed()
    run_id = admin("POST", "/api/v1/jobs/a/job/run")["runs"][0]["id"]
    victim_token = admin(
        "POST", "/api/v1/tokens", json={"name": "spare", "role": "worker", "pools": ["x"]}
    )["id"]
    hello = {
        "name": "w",
        "host": "h",
        "pools": ["default"],
        "version": "test",
        "protocol": PROTOCOL_VERSION,
    }
    calls = [
        # The run first: deleting its job (below) deletes it.
        Call("GET", "/api/v1/runs", "any"),
        Call("GET", "/api/v1/runs/{run_id}", "read:a", f"/api/v1/runs/{run_id}"),
        Call("GET", "/api/v1/runs/{run_id}/output", "read:a", f"/api/v1/runs/{run_id}/output"),
        Call("POST", "/api/v1/runs/{run_id}/kill", "operate:a", f"/api/v1/runs/{run_id}/kill"),
        Call("GET", "/api/v1/jobs", "any"),
        Call("GET", "/api/v1/jobs/{group}/{name}", "read:a", "/api/v1/jobs/a/job"),
        Call("GET", "/api/v1/jobs/{group}/{name}/explain", "read:a", "/api/v1/jobs/a/job/explain"),
        Call("DELETE", "/api/v1/jobs/{group}/{name}", "edit:a", "/api/v1/jobs/a/job", setup=seed),
        Call("POST", "/api/v1/apply", "edit:a", body={"jobs": [JOB_A]}),
        Call("GET", "/api/v1/calendars", "any"),
        Call("GET", "/api/v1/calendars/{name}", "any", "/api/v1/calendars/cal"),
        Call("PUT", "/api/v1/calendars/{name}", "global", "/api/v1/calendars/cal", CALENDAR),
        Call(
            "DELETE",
            "/api/v1/calendars/{name}",
            "global",
            "/api/v1/calendars/spare",
            setup=spare_calendar,
        ),
        Call("GET", "/api/v1/channels", "any"),
        Call("GET", "/api/v1/channels/{name}", "any", "/api/v1/channels/hook"),
        Call("PUT", "/api/v1/channels/{name}", "global", "/api/v1/channels/hook", CHANNEL),
        Call(
            "DELETE",
            "/api/v1/channels/{name}",
            "global",
            "/api/v1/channels/spare",
            setup=spare_channel,
        ),
        Call("POST", "/api/v1/channels/{name}/test", "global", "/api/v1/channels/hook/test"),
        Call("GET", "/api/v1/groups", "any"),
        Call("GET", "/api/v1/deliveries", "any"),
        Call("POST", "/api/v1/jobs/{group}/{name}/run", "operate:a", "/api/v1/jobs/a/job/run"),
        Call(
            "POST",
            "/api/v1/jobs/{group}/{name}/backfill",
            "operate:a",
            "/api/v1/jobs/a/job/backfill",
            {"from": "2020-01-01T00:00:00Z", "to": "2020-01-01T01:00:00Z", "dry_run": True},
        ),
        Call(
            "POST",
            "/api/v1/jobs/{group}/{name}/pause",
            "operate:a",
            "/api/v1/jobs/a/job/pause",
            {"note": "x"},
        ),
        Call(
            "POST", "/api/v1/jobs/{group}/{name}/resume", "operate:a", "/api/v1/jobs/a/job/resume"
        ),
        Call("GET", "/api/v1/cluster", "any"),
        Call("GET", "/api/v1/maintenance", "any"),
        Call("PUT", "/api/v1/maintenance", "global", body={"note": "x"}),
        Call("DELETE", "/api/v1/maintenance", "global"),
        Call(
            "PUT",
            "/api/v1/maintenance/{group}",
            "administer:a",
            "/api/v1/maintenance/a",
            {"note": "x"},
        ),
        Call("DELETE", "/api/v1/maintenance/{group}", "administer:a", "/api/v1/maintenance/a"),
        Call("POST", "/api/v1/workers/{name}/drain", "global", "/api/v1/workers/w/drain"),
        Call("POST", "/api/v1/workers/{name}/undrain", "global", "/api/v1/workers/w/undrain"),
        Call("GET", "/api/v1/me", "caller"),
        Call("POST", "/api/v1/logout", "caller"),
        Call("GET", "/api/v1/users", "group-admin"),
        Call(
            "POST",
            "/api/v1/users",
            "global",
            body={"name": "victim", "password": PASSWORD},
            setup=lambda: httpx.delete(
                server.url + "/api/v1/users/victim", headers=_bearer(server.token)
            ),
        ),
        Call(
            "PATCH",
            "/api/v1/users/{name}",
            "global",
            "/api/v1/users/victim",
            {"disabled": True},
            setup=victim(),
        ),
        Call(
            "PUT",
            "/api/v1/users/{name}/password",
            "global",
            "/api/v1/users/victim/password",
            {"password": PASSWORD + "!"},
            setup=victim(),
        ),
        Call("DELETE", "/api/v1/users/{name}", "global", "/api/v1/users/victim", setup=victim()),
        Call("GET", "/api/v1/grants", "any"),
        Call(
            "PUT",
            "/api/v1/grants/{user}/{group}",
            "administer:a",
            "/api/v1/grants/victim/a",
            {"role": "viewer"},
            setup=victim(),
        ),
        Call(
            "DELETE",
            "/api/v1/grants/{user}/{group}",
            "administer:a",
            "/api/v1/grants/victim/a",
            setup=victim(grant=True),
        ),
        Call("GET", "/api/v1/tokens", "any"),
        Call("POST", "/api/v1/tokens", "any", body={"name": "more"}),
        Call(
            "DELETE",
            "/api/v1/tokens/{token_id}",
            "global",
            f"/api/v1/tokens/{victim_token}",
            denied=404,  # someone else's token: as if it did not exist
            setup=lambda: None,
        ),
        Call("GET", "/api/v1/audit", "any"),
        Call("POST", "/api/v1/workers/hello", "worker", body=hello),
        Call("POST", "/api/v1/workers/{name}/claim", "worker", "/api/v1/workers/w/claim", {}),
        Call(
            "POST", "/api/v1/workers/{name}/heartbeat", "worker", "/api/v1/workers/w/heartbeat", {}
        ),
        Call("POST", "/api/v1/workers/{name}/reports", "worker", "/api/v1/workers/w/reports", {}),
    ]
    # Every route of the API is in the matrix (but logging in, which is for anyone).
    schema = httpx.get(server.url + "/api/v1/openapi.json").json()
    routes = {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method in operations
    }
    covered = {(call.method, call.template) for call in calls} | {("POST", "/api/v1/login")}
    assert routes - covered == set(), "endpoints missing from the permission matrix"

    wrong = []
    for call in calls:
        # Those refused go first, on the state the setup left: they must change nothing.
        # Each allowed caller may use it up (a deletion): the setup makes it again.
        ordered = sorted(callers, key=lambda caller: caller.allowed(call.rule))
        for position, caller in enumerate(ordered):
            if call.setup is not None and (position == 0 or caller.allowed(call.rule)):
                call.setup()
            if call.template == "/api/v1/tokens/{token_id}" and caller.name == "global":
                # Revoked once only: the global admin goes last with a fresh token to revoke.
                continue
            answer = httpx.request(
                call.method,
                server.url + (call.path or call.template),
                json=call.body,
                headers=caller.headers,
                timeout=30,
            )
            expected = "allowed" if caller.allowed(call.rule) else "denied"
            got = answer.status_code
            ok = (
                got not in (401, 403) and got < 500 and got != call.denied
                if expected == "allowed"
                else got == _denial(caller, call)
            )
            if not ok:
                wrong.append(
                    f"{call.method} {call.template} as {caller.name}: {got} {answer.text[:120]}"
                )
    global_caller = next(c for c in callers if c.name == "global")
    revoked = httpx.delete(
        server.url + f"/api/v1/tokens/{victim_token}", headers=global_caller.headers
    )
    assert revoked.status_code == 204, revoked.text
    assert wrong == [], "\n".join(wrong)


def test_what_a_role_sees_is_filtered_to_its_groups(server: Belfry) -> None:
    admin = server.api
    admin("POST", "/api/v1/users", json={"name": "bee", "password": PASSWORD})
    admin("PUT", "/api/v1/grants/bee/b", json={"role": "operator"})
    admin("POST", "/api/v1/apply", json={"jobs": [JOB_A, JOB_B]})
    admin("POST", "/api/v1/jobs/a/job/run")
    admin("POST", "/api/v1/jobs/b/job/run")
    bee = _bearer(_login_token(server, "bee"))

    def get(path: str) -> Any:
        answer = httpx.get(server.url + path, headers=bee, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()

    assert [job["job"] for job in get("/api/v1/jobs")] == ["b/job"]
    assert {run["job"] for run in get("/api/v1/runs")} == {"b/job"}
    # The audit log: only entries about group b, nothing about users or other groups.
    entries = get("/api/v1/audit")
    assert entries and {entry["group"] for entry in entries} == {"b"}
    everything = admin("GET", "/api/v1/audit", params={"limit": 1000})
    assert {"a", "b", None} <= {entry["group"] for entry in everything}


def _denial(caller: Caller, call: Call) -> int:
    """The status a caller the rule leaves out gets: no credentials 401; a worker token
    outside the worker protocol 403; others as the call says."""
    if caller.name == "anonymous":
        return 401
    if caller.name == "worker":
        return 403
    return call.denied


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
