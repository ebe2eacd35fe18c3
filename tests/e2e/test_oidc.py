"""Single sign-on against a real ``belfry server`` and a real OpenID Connect provider.

The provider (``tests/oidc_provider.py``) serves HTTP on loopback; the server finds it by
discovery, sends the "browser" (httpx following redirects, with a cookie jar) there and
redeems the code over its own connection. Logins, role changes at the provider, forged
states and tampered ID tokens, a provider that is down, and the config's checks.
"""

from __future__ import annotations

import re
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import BELFRY, Belfry, free_port, start_server
from tests.oidc_provider import OidcProvider, ProviderUser

pytestmark = pytest.mark.e2e

CLIENT_ID = "belfry"
CLIENT_SECRET = "a-client-secret-nobody-guesses"
ROLES = """
    roles:
      sre: {global_admin: true}
      billing-team: {billing: editor}
      everyone: {"*": viewer}
"""


def _config(tmp_path: Path, issuer: str, roles: str = ROLES) -> Path:
    secret = tmp_path / "oidc-secret"
    secret.write_text(CLIENT_SECRET + "\n")
    config = tmp_path / "belfry.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            oidc:
              issuer: {issuer}
              client_id: {CLIENT_ID}
              client_secret_file: {secret}
            """
        )
        + textwrap.indent(textwrap.dedent(roles).strip() + "\n", "  ")
    )
    return config


@pytest.fixture(scope="module")
def sso(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OidcProvider, Belfry]]:
    """One provider and one server for the module's tests (each uses its own users)."""
    tmp_path = tmp_path_factory.mktemp("sso")
    port = free_port()
    provider = OidcProvider(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uri=f"http://127.0.0.1:{port}/api/v1/oidc/callback",
    )
    with provider:
        config = _config(tmp_path, provider.issuer)
        server = start_server(
            tmp_path / "home",
            f"sqlite:///{tmp_path / 'belfry.db'}",
            "--no-worker",
            "--config",
            str(config),
            port=port,
        )
        try:
            yield provider, server
        finally:
            server.stop()


@pytest.fixture
def provider(sso: tuple[OidcProvider, Belfry]) -> Iterator[OidcProvider]:
    provider = sso[0]
    yield provider
    provider.tamper, provider.deny = None, False


@pytest.fixture
def server(sso: tuple[OidcProvider, Belfry]) -> Belfry:
    return sso[1]


def _browser(server: Belfry) -> httpx.Client:
    return httpx.Client(base_url=server.url, follow_redirects=True, timeout=30)


def _log_in(browser: httpx.Client, next_path: str | None = None) -> httpx.Response:
    """Through the provider and back: the answer of the callback."""
    params = {"next": next_path} if next_path is not None else None
    return browser.get("/api/v1/oidc/login", params=params)


def _code_and_state(browser: httpx.Client) -> dict[str, str]:
    """Start a login and let the provider answer, but stop before the callback."""
    start = browser.get("/api/v1/oidc/login", follow_redirects=False)
    assert start.status_code == 302, start.text
    back = browser.get(start.headers["location"], follow_redirects=False)
    assert back.status_code == 302, back.text
    return dict(httpx.URL(back.headers["location"]).params)


def _detail(response: httpx.Response) -> str:
    detail: str = response.json()["detail"]
    assert "\n" not in detail and "Traceback" not in response.text
    return detail


def _audit(server: Belfry, **params: Any) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = server.api("GET", "/api/v1/audit", params=params)
    return entries


def test_a_login_through_the_provider_starts_a_session_with_the_mapped_roles(
    provider: OidcProvider, server: Belfry
) -> None:
    provider.user = ProviderUser(
        sub="u-1001",
        preferred_username="alice",
        email="alice@example.com",
        groups=("billing-team", "everyone", "not-mapped"),
    )
    with _browser(server) as browser:
        answer = _log_in(browser)
        assert answer.status_code == 200, answer.text
        assert answer.url.path == "/api/v1/oidc/callback"
        # Moves on to / by itself, a same-site navigation that carries the Strict cookie.
        assert re.search(r'http-equiv="refresh" content="0;url=/"', answer.text)
        assert answer.headers["cache-control"] == "no-store"

        # What was asked of the provider: the code flow with PKCE S256, a nonce, a state.
        asked = provider.authorize_requests[-1]
        assert asked["response_type"] == "code" and asked["code_challenge_method"] == "S256"
        assert asked["nonce"] and asked["state"] and "openid" in asked["scope"].split()
        assert provider.token_requests[-1]["code_verifier"]

        # The cookies: the login in progress was Lax (it must survive the cross-site
        # return), is gone now; the session is HttpOnly and Strict, as /login sets it.
        started = answer.history[0].headers["set-cookie"].lower()
        assert "belfry_oidc=" in started and "samesite=lax" in started
        assert "httponly" in started and "path=/api/v1/oidc" in started
        set_cookies = [value.lower() for value in answer.headers.get_list("set-cookie")]
        session = next(value for value in set_cookies if value.startswith("belfry_session="))
        assert "httponly" in session and "samesite=strict" in session
        csrf = next(value for value in set_cookies if value.startswith("belfry_csrf="))
        assert "httponly" not in csrf and "samesite=strict" in csrf
        assert "belfry_oidc" not in browser.cookies

        me = browser.get("/api/v1/me")
        assert me.status_code == 200, me.text
        assert me.json()["name"] == "alice"
        assert me.json()["grants"] == {"billing": "editor", "*": "viewer"}
        assert me.json()["global_admin"] is False
        # A normal session: a state-changing call needs the CSRF token, which it has.
        refused = browser.post("/api/v1/tokens", json={"name": "cli"})
        assert refused.status_code == 403
        made = browser.post(
            "/api/v1/tokens",
            json={"name": "cli"},
            headers={"X-CSRF-Token": browser.cookies["belfry_csrf"]},
        )
        assert made.status_code == 201, made.text
        token = made.json()["token"]

    users = {user["name"]: user for user in server.api("GET", "/api/v1/users")}
    assert users["alice"]["password_login"] is False
    assert users["alice"]["disabled"] is False
    logins = _audit(server, actor="alice", action="login")
    assert [entry["after"] for entry in logins] == [{"via": "oidc"}]
    assert logins[0]["address"] == "127.0.0.1"
    set_grants = {entry["target"] for entry in _audit(server, actor="alice", action="grant.set")}
    assert set_grants == {"alice on billing", "alice on *"}

    # At the provider, alice moves from billing to SRE: the next login says so.
    provider.with_user(groups=("sre",))
    with _browser(server) as browser:
        assert _log_in(browser, "/runs?state=failed").status_code == 200
        me = browser.get("/api/v1/me").json()
    assert me["global_admin"] is True and me["grants"] == {}
    removed = {entry["target"] for entry in _audit(server, actor="alice", action="grant.remove")}
    assert removed == {"alice on billing", "alice on *"}
    [promoted] = _audit(server, actor="alice", action="user.update")
    assert promoted["before"] == {"global_admin": False}
    assert promoted["after"] == {"global_admin": True, "via": "oidc"}
    # Her token acts with her roles as they are now.
    as_alice = httpx.get(
        server.url + "/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert as_alice.json()["global_admin"] is True


def test_next_goes_to_a_local_path_only(provider: OidcProvider, server: Belfry) -> None:
    provider.user = ProviderUser(sub="u-1002", preferred_username="bruno", groups=("everyone",))
    with _browser(server) as browser:
        answer = _log_in(browser, "/runs?job=a/b&state=failed")
        assert answer.status_code == 200, answer.text
        assert 'url=/runs?job=a/b&amp;state=failed"' in answer.text
        for elsewhere in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
            refused = _log_in(browser, elsewhere)
            assert refused.status_code == 400
            assert _detail(refused).startswith("next: must be a path on this server")


def test_a_forged_state_or_no_login_in_progress_is_refused(
    provider: OidcProvider, server: Belfry
) -> None:
    provider.user = ProviderUser(sub="u-1003", preferred_username="carmen", groups=("everyone",))
    with _browser(server) as browser:
        answer = _code_and_state(browser)
        forged = browser.get(
            "/api/v1/oidc/callback", params={"code": answer["code"], "state": "forged"}
        )
        assert forged.status_code == 400
        assert _detail(forged).startswith("state: does not match the login in progress")
        assert "belfry_session" not in browser.cookies
    # A genuine code and state, but from another browser's login: no cookie here.
    with _browser(server) as browser:
        answer = _code_and_state(browser)
    with _browser(server) as stranger:
        refused = stranger.get("/api/v1/oidc/callback", params=answer)
        assert refused.status_code == 400
        assert _detail(refused).startswith("no login in progress in this browser")
        # A made-up cookie is no better.
        stranger.cookies.set("belfry_oidc", "gAAAAABnot-a-real-one", path="/api/v1/oidc")
        refused = stranger.get("/api/v1/oidc/callback", params=answer)
        assert refused.status_code == 400
        assert "expired or is not this server's" in _detail(refused)
    assert not _audit(server, actor="carmen")


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("signature", "bad signature"),
        ("nonce", "'nonce'"),
        ("audience", "'aud'"),
        ("issuer", "'iss'"),
        ("expired", "expired"),
    ],
)
def test_a_tampered_id_token_is_refused(
    provider: OidcProvider, server: Belfry, tamper: Any, reason: str
) -> None:
    provider.user = ProviderUser(
        sub="u-1004", preferred_username=f"mallory-{tamper}", groups=("sre",)
    )
    provider.tamper = tamper
    with _browser(server) as browser:
        answer = _log_in(browser)
        assert answer.status_code == 400, answer.text
        detail = _detail(answer)
        assert detail.startswith("the ID token was refused") and reason in detail, detail
        assert "belfry_session" not in browser.cookies
    assert f"mallory-{tamper}" not in {u["name"] for u in server.api("GET", "/api/v1/users")}


def test_people_belfry_does_not_let_in(provider: OidcProvider, server: Belfry) -> None:
    with _browser(server) as browser:
        # In no mapped group.
        provider.user = ProviderUser(sub="u-1005", preferred_username="dan", groups=("sales",))
        answer = _log_in(browser)
        assert answer.status_code == 403
        assert "none of your groups at the identity provider (sales)" in _detail(answer)
        # Named like the local admin, who has a password: not taken over.
        provider.user = ProviderUser(sub="u-1006", preferred_username="admin", groups=("sre",))
        answer = _log_in(browser)
        assert answer.status_code == 403
        assert _detail(answer).startswith("admin is a local Belfry account with a password")
        # Disabled in Belfry after a first login.
        provider.user = ProviderUser(sub="u-1007", preferred_username="eve", groups=("everyone",))
        assert _log_in(browser).status_code == 200
        server.api("PATCH", "/api/v1/users/eve", json={"disabled": True})
        answer = _log_in(browser)
        assert answer.status_code == 403 and _detail(answer) == "eve is disabled in Belfry"
        # The provider refuses (the user cancelled, say).
        provider.deny = True
        answer = _log_in(browser)
        assert answer.status_code == 400
        assert _detail(answer) == "the identity provider refused the login: access_denied"
        assert browser.get("/api/v1/me").status_code == 401  # eve's session ended too
    failed = {(e["actor"], e["after"]["reason"]) for e in _audit(server, action="login.failed")}
    assert {
        ("dan", "no group mapped to a role"),
        ("admin", "a local account with a password"),
        ("eve", "disabled"),
    } <= failed


def test_a_provider_that_is_down_answers_502(provider: OidcProvider, server: Belfry) -> None:
    provider.user = ProviderUser(sub="u-1008", preferred_username="frida", groups=("everyone",))
    with _browser(server) as browser:
        answer = _code_and_state(browser)
        provider.stop()
        try:
            down = browser.get("/api/v1/oidc/callback", params=answer)
        finally:
            provider.start()
    assert down.status_code == 502
    assert _detail(down).startswith("the identity provider's token endpoint")
    assert "unreachable" in _detail(down)


def test_without_oidc_the_endpoints_are_404(sqlite_url: str, tmp_path: Path) -> None:
    server = start_server(tmp_path / "home", sqlite_url, "--no-worker")
    try:
        for path in ("/api/v1/oidc/login", "/api/v1/oidc/callback?code=x&state=y"):
            answer = httpx.get(server.url + path, timeout=30)
            assert answer.status_code == 404
            assert _detail(answer).startswith("single sign-on is not configured on this server")
        # The routes are browser endpoints, not part of the JSON API's document.
        schema = httpx.get(server.url + "/api/v1/openapi.json", timeout=30).json()
        assert not [path for path in schema["paths"] if path.startswith("/api/v1/oidc")]
    finally:
        server.stop()


def test_a_bad_oidc_section_stops_the_server_with_one_line(tmp_path: Path, sqlite_url: str) -> None:
    # One case end to end (each costs a process start); tests/services/test_sso.py has
    # the others.
    config = _config(tmp_path, "https://sso.example.com", "roles: {sre: {billing: owner}}")
    message = f"{config}: oidc: roles: sre: billing: role: must be one of viewer"
    done = subprocess.run(
        [BELFRY, "server", "--db", sqlite_url, "--config", str(config), "--listen", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


def test_an_unreadable_client_secret_file_stops_the_server(tmp_path: Path, sqlite_url: str) -> None:
    config = _config(tmp_path, "https://sso.example.com")
    (tmp_path / "oidc-secret").unlink()
    done = subprocess.run(
        [BELFRY, "server", "--db", sqlite_url, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().endswith("No such file or directory"), done.stderr
    assert "oidc: client_secret_file: cannot read" in done.stderr
