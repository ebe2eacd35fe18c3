"""Request body limits end to end, against a real `belfry server`: bodies over the limit get
413 whether their length is declared or they arrive chunked, a normal apply still works, a
huge apply is refused whole, a worker's big report batches still get through, and the
server stays healthy throughout.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import BELFRY, Belfry, start_server
from tests.e2e.fleet import Fleet

pytestmark = pytest.mark.e2e

DEFAULT_LIMIT = 10 * 1024 * 1024
# Just over the lowest the server takes (2 MiB); not a power of two, so that the message is
# checked for the configured number.
LOW_LIMIT = 2_100_000


def _post(server: Belfry, path: str, content: Any, **headers: str) -> httpx.Response:
    return httpx.post(
        server.url + path,
        content=content,
        headers={"Authorization": f"Bearer {server.token}", **headers},
        timeout=60,
    )


def _pieces(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """A body of ``total`` bytes as an iterator: httpx sends it chunked, with no length."""
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield b" " * piece


def _assert_too_large(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": f"request body too large (limit {limit} bytes)"}


def _assert_healthy(server: Belfry) -> None:
    assert server.process.poll() is None, server.log_path.read_text()
    assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
    assert server.api("GET", "/api/v1/jobs") is not None
    assert "Traceback" not in server.log_path.read_text()


@pytest.fixture
def default_server(sqlite_url: str, tmp_path: Path) -> Iterator[Belfry]:
    server = start_server(tmp_path / "home", sqlite_url, "--no-worker")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def low_limit_server(sqlite_url: str, tmp_path: Path) -> Iterator[Belfry]:
    config = tmp_path / "belfry.yaml"
    config.write_text(f"max_request_bytes: {LOW_LIMIT}\nworker: false\n")
    server = start_server(tmp_path / "home", sqlite_url, "--config", str(config))
    try:
        yield server
    finally:
        server.stop()


def test_the_default_limit_refuses_declared_and_chunked_bodies(default_server: Belfry) -> None:
    server = default_server
    over = DEFAULT_LIMIT + 1
    _assert_too_large(
        _post(server, "/api/v1/apply", b" " * over, **{"Content-Type": "application/json"}),
        DEFAULT_LIMIT,
    )
    chunked = _post(server, "/api/v1/apply", _pieces(over), **{"Content-Type": "application/json"})
    assert "content-length" not in chunked.request.headers
    assert chunked.request.headers["transfer-encoding"] == "chunked"
    _assert_too_large(chunked, DEFAULT_LIMIT)
    # Refused before authentication: an anonymous flood costs the server no more.
    anonymous = httpx.post(server.url + "/api/v1/apply", content=b" " * over, timeout=60)
    _assert_too_large(anonymous, DEFAULT_LIMIT)
    _assert_healthy(server)


def test_the_limit_is_exact_and_a_setting(low_limit_server: Belfry) -> None:
    server = low_limit_server
    json_type = {"Content-Type": "application/json"}
    # At the limit the body reaches the API (and is judged as JSON); one byte more does not.
    at_limit = _post(server, "/api/v1/apply", b" " * LOW_LIMIT, **json_type)
    assert at_limit.status_code == 422, at_limit.text
    _assert_too_large(
        _post(server, "/api/v1/apply", b" " * (LOW_LIMIT + 1), **json_type), LOW_LIMIT
    )
    at_limit = _post(server, "/api/v1/apply", _pieces(LOW_LIMIT, 1000), **json_type)
    assert at_limit.status_code == 422, at_limit.text
    _assert_too_large(
        _post(server, "/api/v1/apply", _pieces(LOW_LIMIT + 1, 1000), **json_type), LOW_LIMIT
    )
    # A normal body sent chunked is counted, not refused.
    body = {"jobs": [{"name": "chunked", "schedule": "every 1h", "command": "true"}]}
    applied = _post(server, "/api/v1/apply", iter([json.dumps(body).encode()]), **json_type)
    assert applied.status_code == 200, applied.text
    assert [change["job"] for change in applied.json()["changes"]] == ["default/chunked"]
    _assert_healthy(server)


def test_a_huge_apply_is_refused_whole_and_a_normal_one_works(
    low_limit_server: Belfry, tmp_path: Path
) -> None:
    server = low_limit_server
    huge = tmp_path / "huge.yaml"
    huge.write_text(
        "jobs:\n"
        + "".join(
            f'  - {{name: job-{n:05}, schedule: "every 1h", command: "echo {n}"}}\n'
            for n in range(3000)
        )
    )
    done = server.cli("apply", "-f", str(huge))
    assert done.returncode != 0, done.stdout
    assert done.stderr.strip() == f"belfry: request body too large (limit {LOW_LIMIT} bytes)"
    assert server.api("GET", "/api/v1/jobs") == []

    server.apply(
        tmp_path,
        """
        jobs:
          - {name: small-a, schedule: "every 1h", command: "true"}
          - {name: small-b, schedule: "every 1h", command: "true"}
        """,
    )
    assert sorted(job["job"] for job in server.api("GET", "/api/v1/jobs")) == [
        "default/small-a",
        "default/small-b",
    ]
    _assert_healthy(server)


def test_a_worker_splits_report_batches_the_server_finds_too_large(
    low_limit_server: Belfry, sqlite_url: str, tmp_path: Path
) -> None:
    server = low_limit_server
    fleet = Fleet(server, sqlite_url, tmp_path)
    try:
        worker = fleet.start("chatty", "default")
        # 600 kB of \x01: the worker keeps 256 KiB of head and 256 KiB of tail, each one
        # chunk, and JSON writes each character as \u0001 (6 bytes): 1.5 MB a chunk, both
        # in one batch (3 MB) unless the worker splits it for this server.
        server.apply(
            tmp_path,
            """
            jobs:
              - name: loud
                schedule: "at 2099-01-01T00:00:00Z"
                command: "head -c 600000 /dev/zero | tr '\\\\0' '\\\\001'"
            """,
        )
        run_id = server.api("POST", "/api/v1/jobs/default/loud/run")["id"]
        server.wait_for(
            lambda: server.api("GET", f"/api/v1/runs/{run_id}")["state"] == "succeeded",
            what=f"the loud run to succeed\n{worker.log.read_text()}",
        )
        assert worker.process.poll() is None, worker.log.read_text()
        assert "reports per request" in worker.log.read_text()
        page = server.api("GET", f"/api/v1/runs/{run_id}/output", params={"limit": 10000})
        stored = "".join(c["data"] for c in page["chunks"] if c["stream"] == "stdout")
        assert stored == "\x01" * (2 * 256 * 1024)  # head and tail, nothing lost on the way
        _assert_healthy(server)
    finally:
        fleet.close()


@pytest.mark.parametrize("value", ["0", "-5", "ten", "1.5", "true", "2097151"])
def test_a_bad_limit_in_the_config_is_one_line_and_exit_2(tmp_path: Path, value: str) -> None:
    config = tmp_path / "belfry.yaml"
    config.write_text(f"max_request_bytes: {value}\n")
    done = subprocess.run(
        [BELFRY, "server", "--config", str(config)],
        env={**os.environ, "BELFRY_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"belfry: {config}: max_request_bytes: expected a number")
    assert not (tmp_path / "home").exists()
