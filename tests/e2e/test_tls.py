"""TLS end to end: a real `belfry server` on HTTPS with a certificate from a throwaway CA,
real `belfry worker` processes that trust that CA (``--ca``) or not, session cookies that
are Secure over HTTPS (served here, or ended by a trusted reverse proxy), and the CLI's
one-line errors for TLS files that are missing, unreadable or do not belong together.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.e2e.conftest import BELFRY, Belfry, free_port, start_server
from tests.e2e.fleet import Fleet

pytestmark = pytest.mark.e2e


@dataclass
class Pki:
    """A self-signed CA and a certificate it signed for 127.0.0.1 and localhost."""

    ca: Path
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def make_pki(directory: Path, prefix: str = "") -> Pki:
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Belfry test CA"))
        .issuer_name(_name("Belfry test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(
        ca=directory / f"{prefix}ca.pem",
        cert=directory / f"{prefix}server.pem",
        key=directory / f"{prefix}server-key.pem",
    )
    pki.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(server_key, pki.key)
    return pki


@dataclass
class TlsBelfry(Belfry):
    """A server on HTTPS; this test process and the CLI it runs trust only the test CA."""

    ca: Path

    def env(self) -> dict[str, str]:
        # The CLI's client has no --ca yet; httpx honours SSL_CERT_FILE.
        return {**super().env(), "SSL_CERT_FILE": str(self.ca)}

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(
            method,
            self.url + path,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
            verify=ssl.create_default_context(cafile=str(self.ca)),
            **kwargs,
        )
        response.raise_for_status()
        return response.json() if response.content else None


def start_tls_server(home: Path, db_url: str, pki: Pki, *extra: str) -> TlsBelfry:
    """``belfry server`` with ``extra`` options (which must set up TLS), polled over HTTPS."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "server.log"
    process = subprocess.Popen(
        [BELFRY, "server", "--db", db_url, "--listen", f"127.0.0.1:{port}", *extra],
        env={**os.environ, "BELFRY_HOME": str(home)},
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    server = TlsBelfry(f"https://127.0.0.1:{port}", home, process, log_path, pki.ca)
    trust = ssl.create_default_context(cafile=str(pki.ca))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"belfry server exited:\n{log_path.read_text()}")
        try:
            if httpx.get(server.url + "/healthz", timeout=1, verify=trust).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise AssertionError(f"belfry server did not come up over HTTPS:\n{log_path.read_text()}")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture(autouse=True)
def _no_inherited_trust(monkeypatch: pytest.MonkeyPatch) -> None:
    # A worker without --ca must see only the system's trust store, whatever this shell has.
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


@pytest.fixture
def tls_server(sqlite_url: str, tmp_path: Path, pki: Pki) -> Iterator[TlsBelfry]:
    server = start_tls_server(
        tmp_path / "home",
        sqlite_url,
        pki,
        "--no-worker",
        "--tls-cert",
        str(pki.cert),
        "--tls-key",
        str(pki.key),
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fleet(tls_server: TlsBelfry, sqlite_url: str, tmp_path: Path) -> Iterator[Fleet]:
    crew = Fleet(tls_server, sqlite_url, tmp_path)
    try:
        yield crew
    finally:
        crew.close()


def test_a_worker_trusting_the_ca_runs_jobs_over_https(
    fleet: Fleet, pki: Pki, tmp_path: Path
) -> None:
    server = fleet.belfry
    assert server.url.startswith("https://")
    assert f"serving at {server.url}" in server.log_path.read_text()
    # Plain HTTP on the HTTPS port gets no answer from the API.
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.url.replace("https://", "http://") + "/healthz", timeout=5)

    fleet.start("secure", "default", extra=("--ca", str(pki.ca)))
    server.apply(
        tmp_path,
        """
        jobs:
          - {name: over-tls, schedule: "every 1s", command: "echo hello over tls"}
        """,
    )
    runs = server.wait_for(
        lambda: server.runs("default/over-tls", "succeeded"), what="a run through the worker"
    )
    assert runs[0]["worker"] == "secure"
    page = server.api("GET", f"/api/v1/runs/{runs[0]['id']}/output")
    assert "hello over tls" in "".join(chunk["data"] for chunk in page["chunks"])


def test_a_worker_without_the_ca_refuses_the_server(fleet: Fleet, tmp_path: Path) -> None:
    log = tmp_path / "worker-untrusting.log"
    process = subprocess.Popen(
        [BELFRY, "worker", "--server", fleet.belfry.url, "--name", "untrusting"],
        env={**os.environ, "BELFRY_TOKEN": fleet.token("default")},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while "TLS certificate not trusted" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"no TLS refusal in the log:\n{log.read_text()}"
            time.sleep(0.1)
        text = log.read_text()
        assert "--ca FILE" in text
        assert "Traceback" not in text
        # It never joined: the server has not heard of it.
        assert [w["name"] for w in fleet.cluster()] == []
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            # Never joined, nothing to drain: SIGTERM stops it at once.
            assert process.wait(timeout=10) == 0, log.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_the_server_takes_tls_files_from_its_config(
    sqlite_url: str, tmp_path: Path, pki: Pki
) -> None:
    config = tmp_path / "belfry.yaml"
    config.write_text(f"tls_cert: {pki.cert}\ntls_key: {pki.key}\nworker: false\n")
    server = start_tls_server(tmp_path / "home", sqlite_url, pki, "--config", str(config))
    try:
        assert server.api("GET", "/api/v1/jobs") == []
        # And the CLI trusts it through SSL_CERT_FILE (what a user does until it has --ca).
        done = server.cli("jobs", "--output", "json")
        assert done.returncode == 0, done.stderr
    finally:
        server.stop()


def _admin_login(
    server: Belfry, client: httpx.Client, headers: dict[str, str] | None = None
) -> httpx.Response:
    password = (server.home / "admin-password").read_text().strip()
    login = client.post(
        server.url + "/api/v1/login",
        json={"name": "admin", "password": password},
        headers=headers,
        timeout=30,
    )
    assert login.status_code == 200, login.text
    return login


def _session_cookie(response: httpx.Response) -> dict[str, str]:
    """The attributes of the session cookie the response sets, as a browser reads them
    (names lower-cased; a flag's value is empty)."""
    [cookie] = [
        header
        for header in response.headers.get_list("set-cookie")
        if header.startswith("belfry_session=")
    ]
    _, *attributes = cookie.split(";")
    return {
        name.strip().lower(): value.strip().lower()
        for name, _, value in (attribute.partition("=") for attribute in attributes)
    }


def _login_addresses(server: Belfry) -> list[str]:
    """Where the audit log says the logins came from, oldest first."""
    logins = server.api("GET", "/api/v1/audit", params={"action": "login"})
    return [entry["address"] for entry in reversed(logins) if entry["action"] == "login"]


# What a reverse proxy that ended TLS for a client at 203.0.113.7 adds to the request.
_FORWARDED_FROM_HTTPS = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}


def test_a_login_over_https_gets_a_secure_httponly_strict_cookie(tls_server: TlsBelfry) -> None:
    trust = ssl.create_default_context(cafile=str(tls_server.ca))
    with httpx.Client(verify=trust) as browser:
        cookie = _session_cookie(_admin_login(tls_server, browser))
        assert "secure" in cookie and "httponly" in cookie
        assert cookie["samesite"] == "strict"
        # The browser sends it back over HTTPS, and it is a session.
        assert browser.get(tls_server.url + "/api/v1/me").json()["name"] == "admin"


def test_behind_a_trusted_proxy_that_ends_tls_the_cookie_is_secure(
    sqlite_url: str, tmp_path: Path
) -> None:
    # The proxy is 127.0.0.2 (all of 127/8 is loopback): from 127.0.0.1 the same headers
    # are anyone's forgery.
    server = start_server(
        tmp_path / "home", sqlite_url, "--no-worker", "--forwarded-allow-ips", "127.0.0.2"
    )
    try:
        proxy = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(transport=proxy) as through_proxy:
            cookie = _session_cookie(_admin_login(server, through_proxy, _FORWARDED_FROM_HTTPS))
        assert "secure" in cookie and "httponly" in cookie and cookie["samesite"] == "strict"
        with httpx.Client() as forger:
            forged = _session_cookie(_admin_login(server, forger, _FORWARDED_FROM_HTTPS))
        assert "secure" not in forged
        # The audit log has the client the proxy speaks for, and the forger's own address.
        assert _login_addresses(server) == ["203.0.113.7", "127.0.0.1"]
    finally:
        server.stop()


def test_a_server_believes_no_proxy_headers_by_default(sqlite_url: str, tmp_path: Path) -> None:
    # Uvicorn alone would believe them from 127.0.0.1: Belfry trusts only proxies it is given.
    server = start_server(tmp_path / "home", sqlite_url, "--no-worker")
    try:
        with httpx.Client() as forger:
            cookie = _session_cookie(_admin_login(server, forger, _FORWARDED_FROM_HTTPS))
        assert "secure" not in cookie
        assert _login_addresses(server) == ["127.0.0.1"]
    finally:
        server.stop()


def _belfry(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BELFRY_HOME": str(tmp_path / "home"), "BELFRY_TOKEN": "bfy_x"}
    return subprocess.run(
        [BELFRY, *args], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["server", "--tls-cert", "nope.pem", "--tls-key", "{key}"], "--tls-cert: cannot read"),
        (["server", "--tls-cert", "{cert}", "--tls-key", "nope.pem"], "--tls-key: cannot read"),
        (["server", "--tls-cert", "{cert}"], "--tls-key: required with --tls-cert"),
        (["server", "--tls-key", "{key}"], "--tls-cert: required with --tls-key"),
        (["server", "--tls-cert", "{cert}", "--tls-key", "{other_key}"], "--tls-cert/--tls-key"),
        (["server", "--tls-cert", "{ca_dir}", "--tls-key", "{key}"], "--tls-cert: cannot read"),
        (["server", "--config", "{config}"], "belfry.yaml: tls_key: required with"),
        (["worker", "--server", "https://127.0.0.1:1", "--ca", "nope.pem"], "--ca: cannot read"),
        (["worker", "--server", "https://127.0.0.1:1", "--ca", "{key}"], "--ca: "),
        (
            ["server", "--forwarded-allow-ips", "10.0.0.5,proxy.internal"],
            "--forwarded-allow-ips: 'proxy.internal' is not an IP address or network",
        ),
    ],
)
def test_tls_mistakes_are_one_line_and_exit_2(
    tmp_path: Path, pki: Pki, args: list[str], expected: str
) -> None:
    other = make_pki(tmp_path / "other", prefix="other-")
    config = tmp_path / "belfry.yaml"
    config.write_text(f"tls_cert: {pki.cert}\n")
    values = {
        "cert": str(pki.cert),
        "key": str(pki.key),
        "other_key": str(other.key),
        "ca_dir": str(pki.ca.parent),
        "config": str(config),
    }
    done = _belfry(tmp_path, *[arg.format(**values) for arg in args])
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("belfry: ") and expected in lines[0], lines[0]
    # Refused before anything was opened or created.
    assert not (tmp_path / "home").exists()
