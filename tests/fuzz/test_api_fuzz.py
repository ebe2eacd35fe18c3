"""Fuzzing the HTTP API from its own OpenAPI document (schemathesis), bounded for CI.

A real ``belfry server`` (on SQLite, and on PostgreSQL) is seeded with jobs applied through
the CLI, a calendar, a worker, runs in several states, a user, a grant and a spare token.
Every operation of its live ``/api/v1/openapi.json`` is then called, with valid and invalid
input:

- with no credentials, or a wrong token: 401 from every operation but the login;
- with a worker token: 403 from every user endpoint; the worker endpoints as documented;
- with the admin token: as documented;

where "as documented" means never a 5xx, and a status, content type and body the document
describes. A 5xx or a wrong refusal ends an operation's fuzzing; any other departure from
the document is noted once per operation and kind, and the fuzzing goes on, so that one run
reports everything it found.

``BELFRY_FUZZ_EXAMPLES`` raises the cases per operation (default 15) for a deeper run than
CI's two minutes allow.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from psycopg import sql
from schemathesis import APIOperation, Case, CheckFunction, GenerationMode, Response
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.schemas import BaseSchema

from belfry.core.protocol import PROTOCOL_VERSION
from tests.conftest import _admin, pg_database_url
from tests.e2e.conftest import BELFRY, Belfry, start_server

pytestmark = pytest.mark.e2e

Operation = APIOperation[Any, Any, Any, Any]

EXAMPLES = int(os.environ.get("BELFRY_FUZZ_EXAMPLES", "15"))
# A refusal shows on the first case: a few per operation, invalid bodies among them.
FEW = min(EXAMPLES, 4)
# Long polls: the document allows waits of 30 s (claim) and 60 s (output); a bounded run
# cannot sit in them, and what they answer after a short wait has the same shape.
MAX_WAIT = 0.2
TIMEOUT = 20.0
WORKER_PATHS = "/api/v1/workers/"
# Operations anyone may call: the login (its own 401 is for wrong credentials).
PUBLIC = frozenset({"POST /api/v1/login"})
# Operations for any valid credentials, a worker token's included.
ANY_CALLER = frozenset({"GET /api/v1/me", "POST /api/v1/logout"})

# A server error ends the operation's fuzzing; the rest are noted and the fuzzing goes on.
HARD_CHECKS: list[CheckFunction] = [not_a_server_error]
SOFT_CHECKS: list[CheckFunction] = [
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

# Derandomized, so that a CI failure replays the same cases; no deadline (a real server
# over HTTP is slow for Hypothesis's taste, and that is no finding); no shrinking (it
# costs hundreds of requests per failure, and the curl line reproduces the case as found).
BOUNDED = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)

CONFIG: dict[str, Any] = {
    # Credentials are each test's to set: none generated, none stripped.
    "generation": {"with-security-parameters": False},
    # Values learnt from responses (times, ids) would make cases differ between runs.
    "phases": {"fuzzing": {"extra-data-sources": {"responses": False}}},
}

CALENDAR = "fuzz-holidays"
SEED: dict[str, Any] = {
    "calendars": [
        {"name": CALENDAR, "timezone": "Europe/Berlin", "dates": ["2027-12-24", "2027-12-25"]}
    ],
    "jobs": [
        {
            "name": "hello",
            "group": "fuzz",
            "schedule": "0 3 * * *",
            "command": "echo hello",
            "exclude": [CALENDAR],
        },
        {
            "name": "failing",
            "group": "fuzz",
            "schedule": "30 2 * * *",
            "timezone": "Europe/Berlin",
            "command": "echo ERROR boom; exit 3",
            "failure_pattern": "ERROR",
        },
        {
            "name": "web",
            "group": "fuzz",
            "schedule": "at 2030-01-01T00:00:00Z",
            "http": {"method": "GET", "url": "http://127.0.0.1:9/"},
            "paused": True,
        },
    ],
}
WORKER = "fuzz-worker"
HELLO = {
    "name": WORKER,
    "host": "fuzz-host",
    "pools": ["default"],
    "version": "fuzz",
    "protocol": PROTOCOL_VERSION,
}
USER = "fuzz-user"


@dataclass
class Target:
    """A seeded server, its tokens, and the real objects path parameters may name."""

    server: Belfry
    worker_token: str
    # Path template -> path parameters naming real objects.
    objects: dict[str, list[dict[str, Any]]]
    # Tokens the tests authenticate with, and one to revoke in their place.
    own_tokens: set[int] = field(default_factory=set)
    spare_token: int | None = None

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.server.token}"}

    def worker(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.worker_token}"}

    def revive_worker(self, _: Operation | None = None) -> None:
        """The seeded worker back (a worker silent for 15 s is lost: 410 to everything)."""
        hello = httpx.post(
            self.server.url + WORKER_PATHS + "hello",
            json=HELLO,
            headers=self.worker(),
            timeout=TIMEOUT,
        )
        assert hello.status_code == 200, hello.text

    def seed_user(self) -> None:
        """The seeded user (anew, if deleted) and their grant on the seeded group."""
        # No password: nobody logs in as this user, and hashing one costs a lot.
        made = httpx.post(
            self.server.url + "/api/v1/users",
            json={"name": USER},
            headers=self.admin(),
            timeout=TIMEOUT,
        )
        assert made.status_code == 201 or "exists" in made.text, made.text
        self.server.api("PUT", f"/api/v1/grants/{USER}/fuzz", json={"role": "operator"})

    def reseed(self, operation: Operation) -> None:
        """The seeded objects back before each operation, so that what one did to them
        (paused, pruned, replaced, lost, deleted) leaves the next more than 404s to find."""
        # Forced: what a case changed (a pause...) is drift the seed overwrites.
        self.server.api("POST", "/api/v1/apply", json={**SEED, "force": True})
        self.revive_worker(operation)
        if self.spare_token is not None:  # the API has accounts
            self.seed_user()

    def spare_own_tokens(self, case: Case[Any]) -> None:
        # Revoking the token the tests run with would turn every later case into a 401.
        if case.operation.path == "/api/v1/tokens/{token_id}" and case.method == "DELETE":
            params = case.path_parameters or {}
            token_id = params.get("token_id")
            if isinstance(token_id, int) and token_id in self.own_tokens and self.spare_token:
                params["token_id"] = self.spare_token


@dataclass
class Findings:
    """What one fuzzing pass found, by operation."""

    lines: list[str] = field(default_factory=list)
    seen: set[tuple[str, str]] = field(default_factory=set)

    def note(self, label: str, kind: str, text: str) -> None:
        if (label, kind) not in self.seen:
            self.seen.add((label, kind))
            # Bodies of generated cases can run to kilobytes: the head says enough.
            self.lines.append(f"--- {label}: {kind}\n{text[:2000]}")


Send = Callable[[Case[Any], Findings], None]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def fuzz_db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One database of each kind for the whole module (``store_url`` is per test, and a
    server per test would not fit in the time this file has). The refusals come before any
    database work: they run on SQLite; what the database may refuse (lengths, constraints),
    on PostgreSQL, the stricter."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('fuzz-sqlite') / 'belfry.db'}"
        return
    server: str = request.getfixturevalue("pg_server")
    template: str = request.getfixturevalue("pg_template")
    name = f"belfry_fuzz_{uuid.uuid4().hex[:12]}"
    _admin(
        server,
        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)
        ),
    )
    try:
        yield pg_database_url(server, name)
    finally:
        _admin(
            server, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _worker_token(db_url: str) -> str:
    args = [BELFRY, "token", "create", "--db", db_url, "--role", "worker", "--pool", "default"]
    done = subprocess.run([*args, "--output", "json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    token: str = json.loads(done.stdout)["token"]
    return token


def _play_worker(server: Belfry, token: str) -> None:
    """Runs in every state the API shows, made by a worker played by hand (the server has
    no worker of its own): succeeded and failed with output, running, and queued."""
    agent = httpx.Client(
        base_url=server.url + WORKER_PATHS.rstrip("/"),
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    )
    assert agent.post("/hello", json=HELLO).status_code == 200

    def claim(*jobs: str) -> list[int]:
        for job in jobs:
            server.api("POST", f"/api/v1/jobs/fuzz/{job}/run")
        reply = agent.post(f"/{WORKER}/claim", json={"free": {"slots": len(jobs)}, "wait": 5})
        assert reply.status_code == 200, reply.text
        run_ids = sorted(order["run_id"] for order in reply.json()["orders"])
        assert len(run_ids) == len(jobs), reply.text
        return run_ids

    at = datetime.now(UTC).isoformat()
    succeeded, failed = claim("hello", "failing")
    reports = {
        "started": [
            {"run_id": run_id, "pid": 4242, "host": "fuzz-host"} for run_id in (succeeded, failed)
        ],
        "output": [
            {"run_id": succeeded, "seq": 0, "stream": "stdout", "data": "hello\n", "at": at},
            {"run_id": failed, "seq": 0, "stream": "stdout", "data": "ERROR boom\n", "at": at},
            {"run_id": failed, "seq": 1, "stream": "stderr", "data": "\u00e9\u00e8\n", "at": at},
        ],
        "finished": [
            {"run_id": succeeded, "state": "succeeded", "exit_code": 0},
            {"run_id": failed, "state": "failed", "exit_code": 3},
        ],
    }
    assert agent.post(f"/{WORKER}/reports", json=reports).status_code == 204
    [running] = claim("hello")
    started = {"started": [{"run_id": running, "pid": 4343, "host": "fuzz-host"}]}
    assert agent.post(f"/{WORKER}/reports", json=started).status_code == 204
    server.api("POST", "/api/v1/jobs/fuzz/hello/run")  # queued: nobody claims it


def _seed_accounts(target: Target) -> None:
    """A user with a grant, and a spare token, where the API has accounts."""
    server = target.server
    paths = server.api("GET", "/api/v1/openapi.json")["paths"]
    if "/api/v1/users" not in paths:
        return
    target.seed_user()
    target.own_tokens = {token["id"] for token in server.api("GET", "/api/v1/tokens")}
    spare = server.api("POST", "/api/v1/tokens", json={"name": "fuzz-spare", "role": "admin"})
    target.spare_token = spare["id"]
    target.objects |= {
        "/api/v1/users/{name}": [{"name": USER}],
        "/api/v1/grants/{user}/{group}": [{"user": USER, "group": "fuzz"}],
        "/api/v1/tokens/{token_id}": [{"token_id": spare["id"]}],
    }


@pytest.fixture(scope="module")
def target(fuzz_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    home = tmp_path_factory.mktemp("fuzz-home")
    # No embedded worker: a fuzzed job must never run a command on this machine.
    server = start_server(home, fuzz_db_url, "--no-worker")
    try:
        seed_file = home / "seed.yaml"
        seed_file.write_text(json.dumps(SEED, indent=2))  # JSON is YAML
        done = server.cli("apply", "-f", str(seed_file))
        assert done.returncode == 0, done.stdout + done.stderr
        token = _worker_token(fuzz_db_url)
        _play_worker(server, token)
        runs = server.api("GET", "/api/v1/runs", params={"limit": 1000})
        workers = server.api("GET", "/api/v1/cluster")["workers"]
        target = Target(
            server=server,
            worker_token=token,
            objects={
                "/api/v1/jobs/{group}/{name}": [
                    {"group": job["group"], "name": job["name"]} for job in SEED["jobs"]
                ],
                "/api/v1/calendars/{name}": [{"name": CALENDAR}],
                "/api/v1/runs/{run_id}": [{"run_id": run["id"]} for run in runs],
                "/api/v1/workers/{name}": [{"name": worker["name"]} for worker in workers],
            },
        )
        _seed_accounts(target)
        yield target
    finally:
        server.stop()


@pytest.fixture
def api(target: Target) -> BaseSchema:
    """The live server's own document, path parameters steered to real objects."""
    schema = schemathesis.openapi.from_url(
        target.server.url + "/api/v1/openapi.json",
        config=schemathesis.Config.from_dict(CONFIG),
        timeout=TIMEOUT,
    )

    def before_generate_path_parameters(context: Any, strategy: Any) -> Any:
        # Random names and ids find nothing: half the time, name a real object.
        path = context.operation.path if context.operation else ""
        real = next((found for at, found in target.objects.items() if path.startswith(at)), [])
        return st.one_of(st.sampled_from(real), strategy) if real else strategy

    schema.hook(before_generate_path_parameters)
    return schema


def _cases(operation: Operation) -> st.SearchStrategy[Case[Any]]:
    """Valid and invalid cases (an invalid one must be a 4xx, never a 5xx)."""
    strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
    # Nothing to make invalid (no parameters, no body): positive cases only.
    if operation.path_parameters or operation.query or operation.body or operation.headers:
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))
    return st.one_of(strategies)


def _bounded(case: Case[Any]) -> Case[Any]:
    """The case with its long-poll waits cut to MAX_WAIT."""
    for values in (case.query, case.body):
        if isinstance(values, dict):
            wait = values.get("wait")
            if isinstance(wait, int | float) and not isinstance(wait, bool) and wait > MAX_WAIT:
                values["wait"] = MAX_WAIT
    return case


def _judge(case: Case[Any], response: Response, findings: Findings) -> None:
    case.validate_response(response, checks=HARD_CHECKS)
    try:
        case.validate_response(response, checks=SOFT_CHECKS)
    except FailureGroup as group:
        for failure in group.exceptions:
            kind = f"{failure.title} ({response.status_code})"
            findings.note(case.operation.label, kind, group.message)


def _documented(headers: Callable[[], dict[str, str]]) -> Send:
    def send(case: Case[Any], findings: Findings) -> None:
        _judge(case, _bounded(case).call(headers=headers(), timeout=TIMEOUT), findings)

    return send


def _refused(status: int, who: str, headers: Callable[[], dict[str, str]]) -> Send:
    def send(case: Case[Any], findings: Findings) -> None:
        response = _bounded(case).call(headers=headers(), timeout=TIMEOUT)
        # A 400 or 422 here: the body was parsed, and judged, before the credentials.
        hint = " (body judged before credentials)" if response.status_code in (400, 422) else ""
        assert response.status_code == status, (
            f"{who}: {response.status_code}, not {status}{hint}: {response.text[:300]}\n"
            f"Reproduce with:\n    {case.as_curl_command(headers=headers())}"
        )
        _judge(case, response, findings)

    return send


def _fuzz(
    schema: BaseSchema,
    select: Callable[[Operation], bool],
    send: Callable[[Operation], Send],
    *,
    examples: int = EXAMPLES,
    before: Callable[[Operation], None] | None = None,
) -> None:
    """``send`` every selected operation's cases; fail with everything found."""
    findings = Findings()
    fuzzed = 0
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            findings.note(str(result.err().label), "invalid in the document", str(result.err()))
            continue
        operation = result.ok()
        if not select(operation):
            continue
        fuzzed += 1
        if before is not None:
            before(operation)
        _fuzz_operation(operation, send(operation), findings, examples)
    assert fuzzed, "no operation selected: has the document changed?"
    if findings.lines:
        pytest.fail(
            f"{len(findings.lines)} finding(s):\n\n" + "\n\n".join(findings.lines), pytrace=False
        )


def _fuzz_operation(operation: Operation, send: Send, findings: Findings, examples: int) -> None:
    @settings(BOUNDED, max_examples=examples)
    @given(case=_cases(operation))
    def run(case: Case[Any]) -> None:
        send(case, findings)

    try:
        run()
    except FailureGroup as group:
        # The first failing case; the message says how to reproduce it.
        kind = ", ".join(sorted({failure.title for failure in group.exceptions}))
        findings.note(operation.label, kind, group.message)
    except AssertionError as error:
        findings.note(operation.label, "wrong refusal", str(error))


def _is_worker_endpoint(operation: Operation) -> bool:
    return operation.path.startswith(WORKER_PATHS)


# The server is the module's: the tests that change least come first, the deletes last.


@pytest.mark.on_store("sqlite")
def test_every_operation_refuses_a_caller_without_valid_credentials(
    api: BaseSchema, target: Target
) -> None:
    def send(operation: Operation) -> Send:
        declared = bool(operation.definition.raw.get("security"))
        assert declared == (operation.label not in PUBLIC), (
            f"{operation.label}: the document {'asks' if declared else 'does not ask'} for "
            "credentials, and PUBLIC in this test says the opposite"
        )
        if operation.label in PUBLIC:
            return _documented(dict)
        no_token = _refused(401, "without credentials", dict)
        wrong = _refused(401, "with a wrong token", lambda: {"Authorization": "Bearer bfy_wrong"})

        def both(case: Case[Any], findings: Findings) -> None:
            no_token(case, findings)
            wrong(case, findings)

        return both

    _fuzz(api, lambda _: True, send, examples=FEW)


@pytest.mark.on_store("sqlite")
def test_a_worker_token_is_refused_by_every_user_endpoint(api: BaseSchema, target: Target) -> None:
    def send(operation: Operation) -> Send:
        if operation.label in PUBLIC | ANY_CALLER:
            return _documented(target.worker)
        return _refused(403, "with a worker token", target.worker)

    _fuzz(api, lambda operation: not _is_worker_endpoint(operation), send, examples=FEW)


@pytest.mark.on_store("postgresql")
def test_the_worker_endpoints_answer_a_worker_token_as_documented(
    api: BaseSchema, target: Target
) -> None:
    _fuzz(
        api, _is_worker_endpoint, lambda _: _documented(target.worker), before=target.revive_worker
    )


@pytest.mark.on_store("postgresql")
def test_admin_calls_answer_as_documented(api: BaseSchema, target: Target) -> None:
    _fuzz(
        api,
        lambda operation: operation.method.upper() != "DELETE",
        lambda _: _documented(target.admin),
        before=target.reseed,
    )


@pytest.mark.on_store("postgresql")
def test_admin_deletes_answer_as_documented(api: BaseSchema, target: Target) -> None:
    # Last: a deleted job takes its runs along, which the reseed does not bring back.
    def send(_: Operation) -> Send:
        documented = _documented(target.admin)

        def spare_then_send(case: Case[Any], findings: Findings) -> None:
            target.spare_own_tokens(case)
            documented(case, findings)

        return spare_then_send

    _fuzz(api, lambda operation: operation.method.upper() == "DELETE", send, before=target.reseed)
