"""HTTP jobs against a real HTTP server on 127.0.0.1 (the standard library's, in a thread)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from belfry.core.execution import HttpRequest, Outcome
from belfry.core.states import RunState
from belfry.worker.executor import execute
from tests.worker.recording import RecordingReporter, order

BIG_BODY_BYTES = 5_000_000


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    release: threading.Event  # set by the fixture: lets /slow answer

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def do_PUT(self) -> None:
        self._route()

    def _route(self) -> None:
        path = self.path
        if path == "/ok":
            self._send(200, b"all good\n")
        elif path.startswith("/status/"):
            self._send(int(path.removeprefix("/status/")), b"status body\n")
        elif path == "/echo":
            length = int(self.headers.get("Content-Length") or 0)
            seen = {
                "method": self.command,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": self.rfile.read(length).decode(),
            }
            self._send(200, json.dumps(seen).encode())
        elif path == "/error-body":
            self._send(200, b"step 1 ok\nERROR: quota exceeded\nstep 3 ok\n")
        elif path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/ok")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/slow":
            self.release.wait(60)
            self._send(200, b"late\n")
        elif path == "/big":
            self.send_response(200)
            self.send_header("Content-Length", str(BIG_BODY_BYTES))
            self.end_headers()
            line = b"x" * 99 + b"\n"
            for _ in range(BIG_BODY_BYTES // len(line)):
                self.wfile.write(line)
        elif path == "/latin1":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=iso-8859-1")
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write("café".encode("latin-1") + b"\n")
        else:
            self._send(404, b"no such page\n")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # abandoned requests (timeout, kill) leave broken pipes behind, as they should


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """The base URL of a live HTTP server on a random port."""
    release = threading.Event()
    handler = type("Handler", (_Handler,), {"release": release})
    httpd = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()


async def http_run(
    request: HttpRequest, *, kill: asyncio.Event | None = None, **fields: Any
) -> tuple[Outcome, RecordingReporter]:
    options = {k: fields.pop(k) for k in ("output_head_bytes", "output_tail_bytes") if k in fields}
    reporter = RecordingReporter()
    outcome = await execute(
        order(None, http=request, **fields),
        reporter,
        kill or asyncio.Event(),
        host="test-host",
        **options,
    )
    return outcome, reporter


async def test_a_200_succeeds_with_the_status_line_and_body_as_output(server: str) -> None:
    outcome, reporter = await http_run(HttpRequest(f"{server}/ok"))
    assert outcome == Outcome(RunState.SUCCEEDED, None)
    assert reporter.text("stdout") == "HTTP/1.1 200 OK\nall good\n"
    assert reporter.calls[0] == "started" and reporter.calls[-1] == "finished"
    assert reporter.pid == os.getpid()  # the agent makes the request itself
    assert reporter.host == "test-host"
    assert [chunk.seq for chunk in reporter.chunks] == list(range(len(reporter.chunks)))


async def test_an_unexpected_status_fails_with_it_in_the_reason(server: str) -> None:
    outcome, reporter = await http_run(HttpRequest(f"{server}/status/503"))
    assert outcome == Outcome(RunState.FAILED, None, "HTTP 503 (expected 200)")
    assert reporter.text("stdout") == "HTTP/1.1 503 Service Unavailable\nstatus body\n"

    outcome, _ = await http_run(HttpRequest(f"{server}/status/204", expect_status=(200, 204)))
    assert outcome.state == RunState.SUCCEEDED
    outcome, _ = await http_run(HttpRequest(f"{server}/ok", expect_status=(201, 202)))
    assert outcome.reason == "HTTP 200 (expected 201, 202)"


async def test_redirects_are_not_followed(server: str) -> None:
    outcome, reporter = await http_run(HttpRequest(f"{server}/redirect"))
    assert outcome.reason == "HTTP 302 (expected 200)"
    assert reporter.text("stdout") == "HTTP/1.1 302 Found\n"
    outcome, _ = await http_run(HttpRequest(f"{server}/redirect", expect_status=(302,)))
    assert outcome.state == RunState.SUCCEEDED


async def test_method_headers_and_body_are_sent(server: str) -> None:
    request = HttpRequest(
        f"{server}/echo",
        method="post",
        headers={"Authorization": "Bearer abc", "x-belfry-attempt": "mine"},
        body='{"refresh": true}',
    )
    outcome, reporter = await http_run(request)
    assert outcome.state == RunState.SUCCEEDED
    seen = json.loads(reporter.text("stdout").split("\n", 1)[1])
    assert seen["method"] == "POST"
    assert seen["body"] == '{"refresh": true}'
    headers = seen["headers"]
    assert headers["authorization"] == "Bearer abc"
    assert headers["x-belfry-job"] == "ops/test-job"
    assert headers["x-belfry-run-id"] == "42"
    assert headers["x-belfry-scheduled-for"] == "2027-01-02T03:04:05Z"
    assert headers["x-belfry-occurrence"] == "ops/test-job@2027-01-02T03:04:05Z"
    assert headers["x-belfry-attempt"] == "mine"  # the job's header wins, whatever its case


async def test_failure_pattern_is_searched_in_the_body_only(server: str) -> None:
    outcome, _ = await http_run(HttpRequest(f"{server}/error-body"), failure_pattern="ERROR")
    assert outcome == Outcome(
        RunState.FAILED, None, "failure_pattern matched: ERROR: quota exceeded"
    )
    # "OK" is in the status line, which is not the body.
    outcome, _ = await http_run(HttpRequest(f"{server}/ok"), failure_pattern="OK")
    assert outcome.state == RunState.SUCCEEDED


async def test_the_body_is_decoded_by_its_charset(server: str) -> None:
    outcome, reporter = await http_run(HttpRequest(f"{server}/latin1"))
    assert outcome.state == RunState.SUCCEEDED
    assert reporter.text("stdout").endswith("café\n")


async def test_connection_refused_fails_with_the_error_on_the_belfry_stream() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    outcome, reporter = await http_run(HttpRequest(f"http://127.0.0.1:{port}/"))
    assert outcome.state == RunState.FAILED
    assert outcome.reason is not None
    assert outcome.reason.startswith("HTTP request failed: ConnectError")
    assert "ConnectError" in reporter.text("belfry")
    assert reporter.text("stdout") == ""
    assert reporter.calls[-1] == "finished"


@pytest.mark.parametrize("url", ["not a url", "ftp://127.0.0.1/x", "http://"])
async def test_a_bad_url_fails_the_run(url: str) -> None:
    outcome, reporter = await http_run(HttpRequest(url))
    assert outcome.state == RunState.FAILED
    assert outcome.reason is not None and outcome.reason.startswith("HTTP request failed:")
    assert "HTTP request failed:" in reporter.text("belfry")


async def test_timeout_abandons_the_request(server: str) -> None:
    started = time.monotonic()
    outcome, reporter = await http_run(HttpRequest(f"{server}/slow"), timeout_seconds=0.5)
    took = time.monotonic() - started
    print(f"timed-out run took {took:.2f} s (timeout 0.5 s)")
    assert outcome == Outcome(RunState.TIMED_OUT, None, "timeout")
    assert "timed out after 0.5s: request abandoned" in reporter.text("belfry")
    assert 0.45 <= took < 10


async def test_kill_abandons_the_request(server: str) -> None:
    kill = asyncio.Event()
    task = asyncio.create_task(http_run(HttpRequest(f"{server}/slow"), kill=kill))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    kill.set()
    outcome, reporter = await asyncio.wait_for(task, 30)
    took = time.monotonic() - started
    print(f"killed run ended {took * 1000:.0f} ms after the kill request")
    assert outcome == Outcome(RunState.KILLED, None, "killed on request")
    assert "kill requested: request abandoned" in reporter.text("belfry")
    assert took < 5


async def test_a_big_body_is_capped_head_and_tail(server: str) -> None:
    started = time.monotonic()
    outcome, reporter = await http_run(
        HttpRequest(f"{server}/big"), output_head_bytes=1000, output_tail_bytes=1000
    )
    print(f"5 MB body in {time.monotonic() - started:.2f} s")
    assert outcome.state == RunState.SUCCEEDED
    stdout = reporter.text("stdout")
    assert stdout.startswith("HTTP/1.1 200 OK\nxxx")
    assert len(stdout) == 2000
    status_line = len("HTTP/1.1 200 OK\n")
    omitted = BIG_BODY_BYTES + status_line - 2000
    assert f"[... {omitted:,} bytes of output omitted ...]" in reporter.text("belfry")


async def test_kill_before_start_at_sends_no_request(server: str) -> None:
    kill = asyncio.Event()
    start_at = datetime.now(UTC) + timedelta(seconds=600)
    task = asyncio.create_task(
        http_run(HttpRequest(f"{server}/echo"), kill=kill, start_at=start_at)
    )
    await asyncio.sleep(0.05)
    kill.set()
    outcome, reporter = await asyncio.wait_for(task, 10)
    assert outcome.state == RunState.KILLED
    assert "started" not in reporter.calls
