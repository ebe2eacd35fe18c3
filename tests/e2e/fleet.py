"""Real `belfry worker` processes for the e2e tests: start them, find their runs' processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.conftest import BELFRY, Belfry

__all__ = ["Fleet", "Worker", "running_sleep"]


def running_sleep(seconds: str) -> bool:
    found = subprocess.run(["pgrep", "-f", f"sleep {seconds}"], capture_output=True, text=True)
    for pid in found.stdout.split():
        try:
            with open(f"/proc/{pid}/stat") as handle:
                if handle.read().rsplit(")", 1)[-1].split()[0] != "Z":
                    return True
        except FileNotFoundError:
            continue
    return False


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


class Fleet:
    def __init__(self, belfry: Belfry, db_url: str, tmp_path: Path) -> None:
        self.belfry = belfry
        self.db_url = db_url
        self.tmp_path = tmp_path
        self.workers: list[Worker] = []
        self._tokens: dict[str, str] = {}

    def token(self, *pools: str) -> str:
        key = ",".join(pools)
        if key not in self._tokens:
            args = [BELFRY, "token", "create", "--db", self.db_url, "--role", "worker"]
            for pool in pools:
                args += ["--pool", pool]
            done = subprocess.run(
                [*args, "--output", "json"], capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 0, done.stderr
            self._tokens[key] = json.loads(done.stdout)["token"]
        return self._tokens[key]

    def start(
        self,
        name: str,
        *pools: str,
        servers: str | None = None,
        extra: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> Worker:
        """``belfry worker`` NAME serving ``pools``, with ``env`` added to its environment."""
        log = self.tmp_path / f"worker-{name}.log"
        args = [BELFRY, "worker", "--server", servers or self.belfry.url, "--name", name]
        for pool in pools:
            args += ["--pool", pool]
        process = subprocess.Popen(
            [*args, *extra],
            env={**os.environ, **(env or {}), "BELFRY_TOKEN": self.token(*pools)},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        worker = Worker(name, process, log)
        self.workers.append(worker)
        self.belfry.wait_for(
            lambda: any(w["name"] == name and w["state"] == "active" for w in self.cluster()),
            what=f"worker {name} to join\n{log.read_text() if log.exists() else ''}",
        )
        return worker

    def cluster(self) -> list[dict[str, object]]:
        workers: list[dict[str, object]] = self.belfry.api("GET", "/api/v1/cluster")["workers"]
        return workers

    def close(self) -> None:
        for worker in self.workers:
            worker.stop(signal.SIGKILL)
