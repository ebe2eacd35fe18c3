"""A PostgreSQL cluster of the test's own, for tests that stop, restart or kill the database.

The machine's shared PostgreSQL serves every other test; restarting it would break them.
This one lives in a temporary directory on a port of its own, runs as the ``postgres``
system user (PostgreSQL refuses to run as root), and is thrown away at the end.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

__all__ = ["PrivatePostgres", "postgres_bin"]

_START_SECONDS = 30.0


def postgres_bin() -> Path:
    """The directory of the newest installed PostgreSQL server's programs."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    if not found:
        raise RuntimeError(
            "no PostgreSQL server programs under /usr/lib/postgresql: apt-get install postgresql"
        )
    return Path(found[-1]).parent


def _version_key(path: str) -> int:
    return int(Path(path).parent.parent.name)


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            found.append(int(entry.name))
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PrivatePostgres:
    """``start()`` once; then ``stop()``/``start()``/``restart()``/``kill()`` at will."""

    def __init__(self, port: int | None = None) -> None:
        # Not under pytest's tmp_path: its parents are private to root, and the server
        # runs as ``postgres``.
        self.directory = Path(tempfile.mkdtemp(prefix="belfry-pg-"))
        self.data = self.directory / "data"
        self.port = port or _free_port()
        self._bin = postgres_bin()
        self._as_root = os.geteuid() == 0

    @property
    def url(self) -> str:
        """The ``postgres`` maintenance database, as a user-style URL."""
        return self.database_url("postgres")

    def database_url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self._bin / argv[0]), *argv[1:]]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stderr.strip() or result.stdout}")
        return result

    def initialise(self) -> None:
        if self._as_root:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        settings = [
            f"port = {self.port}",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.directory}'",
            "fsync = off",  # a throwaway cluster: speed over durability across OS crashes
            "max_connections = 200",
        ]
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n".join(settings) + "\n")

    def start(self) -> None:
        if not self.data.exists():
            self.initialise()
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.directory / "log"), "-w", "start")
        self.wait_ready()

    def wait_ready(self, timeout: float = _START_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return
            except psycopg.Error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self, mode: str = "fast") -> None:
        """Stop it: ``fast`` ends sessions cleanly, ``immediate`` is a crash-like stop."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def kill(self) -> None:
        """SIGKILL the postmaster (its backends then exit): the database crashes."""
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().splitlines()[0])
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.05)

    def freeze(self) -> None:
        """SIGSTOP the postmaster and its backends: the database stops answering without
        closing a connection, as behind a network cut."""
        self._signal_all(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal_all(signal.SIGCONT)

    def _signal_all(self, sig: signal.Signals) -> None:
        postmaster = int((self.data / "postmaster.pid").read_text().splitlines()[0])
        for pid in [postmaster, *_children(postmaster)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)
