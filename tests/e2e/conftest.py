"""A real ``belfry server`` subprocess per test, and the real ``belfry`` CLI against it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

BELFRY = str(Path(sys.executable).with_name("belfry"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Belfry:
    url: str
    home: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def token(self) -> str:
        return (self.home / "admin-token").read_text().strip()

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "BELFRY_SERVER": self.url,
            "BELFRY_TOKEN": self.token,
            "BELFRY_HOME": str(self.home),
        }

    def cli(
        self,
        *args: str,
        timeout: float = 60,
        input_text: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """The ``belfry`` CLI as the admin (``env`` overrides, e.g. another token)."""
        return subprocess.run(
            [BELFRY, *args],
            env={**self.env(), **(env or {})},
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def cli_json(self, *args: str) -> Any:
        done = self.cli(*args, "--output", "json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def apply(self, tmp_path: Path, yaml_text: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / f"jobs-{time.monotonic_ns()}.yaml"
        path.write_text(textwrap.dedent(yaml_text))
        done = self.cli("apply", "-f", str(path))
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(
            method,
            self.url + path,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
            **kwargs,
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def user_token(self, user: str, grants: Mapping[str, str], password: str) -> str:
        """A new user holding ``grants`` (group: role), and an API token of theirs, made
        as they would make it: a login, then the session's CSRF token."""
        self.api("POST", "/api/v1/users", json={"name": user, "password": password})
        for group, role in grants.items():
            self.api("PUT", f"/api/v1/grants/{user}/{group}", json={"role": role})
        with httpx.Client(base_url=self.url, timeout=30) as browser:
            login = browser.post("/api/v1/login", json={"name": user, "password": password})
            assert login.status_code == 200, login.text
            made = browser.post(
                "/api/v1/tokens",
                json={"name": "cli"},
                headers={"X-CSRF-Token": login.json()["csrf_token"]},
            )
            assert made.status_code == 201, made.text
            token: str = made.json()["token"]
            return token

    def runs(self, job: str, *states: str, limit: int = 200) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"job": job, "limit": limit}
        if states:
            params["state"] = list(states)
        result: list[dict[str, Any]] = self.api("GET", "/api/v1/runs", params=params)
        return result

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 20, what: str = "condition"
    ) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            assert self.process.poll() is None, f"server died:\n{self.log_path.read_text()}"
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_server(
    home: Path,
    db_url: str,
    *extra: str,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
) -> Belfry:
    """``belfry server`` on ``db_url``, with ``env`` added to its environment."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "server.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [BELFRY, "server", "--db", db_url, "--listen", f"127.0.0.1:{port}", *extra],
        env={**os.environ, **(env or {}), "BELFRY_HOME": str(home)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Belfry(url, home, process, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"belfry server exited:\n{log_path.read_text()}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise AssertionError(f"belfry server did not come up:\n{log_path.read_text()}")


@pytest.fixture
def belfry(store_url: str, tmp_path: Path) -> Iterator[Belfry]:
    server = start_server(tmp_path / "home", store_url)
    try:
        yield server
    finally:
        server.stop()
