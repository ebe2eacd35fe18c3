"""Alerts end to end: a real server, real runs, real receivers on loopback.

A webhook receiver (pytest-httpserver) checks every signature; an SMTP server (aiosmtpd)
collects mail. Each rule is triggered by real runs of real commands: a failing job, a job
that recovers, a long one, one that cannot start, and one the scheduler stops firing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller
from pytest_httpserver import HTTPServer

from tests.e2e.conftest import Belfry, free_port, start_server

SECRET = "e2e-hook-secret"


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def mailbox() -> Iterator[tuple[_Mailbox, int]]:
    box = _Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


def _alerts(httpserver: HTTPServer) -> list[dict[str, Any]]:
    """What the receiver got, each alert's signature checked as a user's endpoint would."""
    found = []
    for request, _ in list(httpserver.log):
        body = request.get_data()
        stamp = request.headers["X-Belfry-Timestamp"]
        expected = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
        assert request.headers["X-Belfry-Signature"] == f"sha256={expected.hexdigest()}"
        assert abs(time.time() - int(stamp)) < 300
        found.append(json.loads(body))
    return found


def _server(tmp_path: Path, db_url: str, *, smtp_port: int | None = None) -> Belfry:
    config = tmp_path / "server.yaml"
    lines = ["alerts: {stall_after: 3s, interval: 0.3}"]
    if smtp_port is not None:
        lines.append(f"smtp: {{host: 127.0.0.1, port: {smtp_port}, sender: belfry@test}}")
    config.write_text("\n".join(lines) + "\n")
    return start_server(tmp_path / "home", db_url, "--config", str(config))


@pytest.fixture
def hook(httpserver: HTTPServer) -> HTTPServer:
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    return httpserver


def _channels(hook: HTTPServer) -> str:
    return f"""
        channels:
          - name: hook
            webhook: {{url: "{hook.url_for("/hook")}", secret: {SECRET}}}
        """


def test_a_failing_job_alerts_once_and_recovers_once(
    store_url: str, tmp_path: Path, hook: HTTPServer
) -> None:
    server = _server(tmp_path, store_url)
    try:
        job = """
        jobs:
          - name: flaky
            schedule: every 1s
            command: "{command}"
            notify: [hook]
        """
        server.apply(tmp_path, _channels(hook) + job.format(command="echo boom >&2; exit 3"))
        server.wait_for(lambda: len(server.runs("default/flaky", "failed")) >= 3, what="3 failures")
        server.wait_for(lambda: _alerts(hook), what="the failure alert")
        server.apply(tmp_path, _channels(hook) + job.format(command="true"))
        server.wait_for(
            lambda: any(a["kind"] == "recovery" for a in _alerts(hook)), what="the recovery"
        )
        server.wait_for(lambda: len(server.runs("default/flaky", "succeeded")) >= 3, what="runs")
        alerts = _alerts(hook)
        assert [a["kind"] for a in alerts] == ["failure", "recovery"]
        assert alerts[0]["summary"] == "failed with exit code 3"
        assert "boom" in alerts[0]["output_tail"]
        # The delivery log shows both, per job and per run.
        logged = server.cli_json("deliveries", "--job", "default/flaky")
        assert sorted((d["kind"], d["state"]) for d in logged) == [
            ("failure", "sent"),
            ("recovery", "sent"),
        ]
        per_run = server.cli_json("deliveries", "--run", str(alerts[0]["run_id"]))
        assert [d["kind"] for d in per_run] == ["failure"]
        # Channels are listed without their secret.
        listed = server.cli("channels")
        assert listed.returncode == 0 and "hook" in listed.stdout
        assert SECRET not in listed.stdout and SECRET not in json.dumps(server.cli_json("channels"))
    finally:
        server.stop()


def test_email_long_and_late_alerts(
    sqlite_url: str, tmp_path: Path, hook: HTTPServer, mailbox: tuple[_Mailbox, int]
) -> None:
    box, smtp_port = mailbox
    server = _server(tmp_path, sqlite_url, smtp_port=smtp_port)
    try:
        server.apply(
            tmp_path,
            _channels(hook)
            + """
          - name: mail
            email: {to: [ops@example.com]}
        jobs:
          - name: broken
            schedule: "at 2020-01-01T00:00:00Z"
            command: "exit 4"
            notify: [mail]
          - name: slow
            schedule: "0 0 1 1 *"
            command: "sleep 60"
            alerts: [{on: too_long, after: 2s, notify: [hook]}]
          - name: stranded
            schedule: "0 0 1 1 *"
            pool: nowhere
            command: "true"
            alerts: [{on: late, after: 2s, notify: [hook]}]
          - name: quick
            schedule: "0 0 1 1 *"
            command: "true"
            alerts: [{on: too_short, under: 5s, notify: [hook]}]
        """,
        )
        broken = server.cli("run", "default/broken", "--wait")
        assert broken.returncode == 4
        server.wait_for(lambda: box.messages, what="the e-mail")
        mail = box.messages[0]
        assert mail["To"] == "ops@example.com"
        assert mail["Subject"] == "[belfry] default/broken: failed with exit code 4"
        assert "exit code: 4" in mail.get_payload(decode=True).decode()  # type: ignore[union-attr]

        slow = server.api("POST", "/api/v1/jobs/default/slow/run")
        server.api("POST", "/api/v1/jobs/default/stranded/run")
        assert server.cli("run", "default/quick", "--wait").returncode == 0
        server.wait_for(
            lambda: {a["kind"] for a in _alerts(hook)} >= {"too_long", "late", "too_short"},
            what="too_long, late and too_short alerts",
        )
        too_long = [a for a in _alerts(hook) if a["kind"] == "too_long"]
        assert len(too_long) == 1 and too_long[0]["run_id"] == slow["id"]
        assert too_long[0]["summary"].startswith("still running after")
        assert server.api("GET", f"/api/v1/runs/{slow['id']}")["state"] == "running"
        late = [a for a in _alerts(hook) if a["kind"] == "late"]
        assert len(late) == 1 and late[0]["summary"].startswith("not started")
        short = [a for a in _alerts(hook) if a["kind"] == "too_short"]
        assert len(short) == 1 and short[0]["job"] == "default/quick"
        time.sleep(1.5)  # further passes decide nothing new
        assert len(_alerts(hook)) == 3
        server.cli("kill", str(slow["id"]))
        # A test alert through the CLI; a channel in use cannot be deleted.
        tested = server.cli("channel", "test", "hook")
        assert tested.returncode == 0, tested.stdout + tested.stderr
        assert _alerts(hook)[-1]["kind"] == "test"
        refused = server.cli("channel", "delete", "hook")
        assert (
            refused.returncode != 0
            and "still used by job default/quick, job default/slow" in refused.stderr
        )
    finally:
        server.stop()


@pytest.mark.postgres
def test_a_job_the_scheduler_stops_firing_alerts_once_and_once_again_when_it_fires(
    pg_url: str, tmp_path: Path, hook: HTTPServer
) -> None:
    server = _server(tmp_path, pg_url)
    try:
        server.apply(
            tmp_path,
            _channels(hook)
            + """
        jobs:
          - {name: heartbeat, schedule: every 1s, command: "true", notify: [hook]}
        """,
        )
        server.wait_for(lambda: server.runs("default/heartbeat", "succeeded"), what="a run")
        # A zombie leader: someone else holds the lease and never fires. No scheduler runs.
        with psycopg.connect(pg_url, autocommit=True) as connection:
            connection.execute(
                "UPDATE leadership SET holder = 'ghost:1', epoch = epoch + 1, "
                "expires_at = now() + interval '1 hour'"
            )
        server.wait_for(lambda: _alerts(hook), timeout=30, what="the stall alert")
        time.sleep(2)  # more watches of the same stall: no second alert
        [stalled] = _alerts(hook)
        assert stalled["kind"] == "missed" and stalled["summary"].startswith("not fired: due")
        with psycopg.connect(pg_url, autocommit=True) as connection:
            connection.execute("DELETE FROM leadership")
        server.wait_for(lambda: len(_alerts(hook)) >= 2, timeout=30, what="fires again")
        time.sleep(2)
        kinds = [a["kind"] for a in _alerts(hook)]
        assert kinds == ["missed", "recovery"], kinds
        assert _alerts(hook)[1]["summary"].startswith("fires again")
    finally:
        server.stop()
