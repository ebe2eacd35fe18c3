"""Single sign-on: the ``oidc:`` settings, claims to user name and roles, the sealed login
state, and what a login does to accounts (on real SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from belfry.adapters.store import SqlStore
from belfry.core.permissions import Role
from belfry.services.accounts import AccountService
from belfry.services.audit import AuditLog
from belfry.services.oidc_login import (
    LoginInvalid,
    LoginRefused,
    LoginStateBox,
    PendingLogin,
    SingleSignOn,
)
from belfry.services.sso import (
    GroupRoles,
    OidcSettings,
    entitlements_for,
    groups_from,
    local_path,
    parse_oidc_settings,
    user_name_from,
)
from tests.services.fake_clock import FakeClock

T0 = datetime(2027, 3, 1, 12, 0, 0, tzinfo=UTC)
ROLES = {
    "sre": GroupRoles(global_admin=True),
    "billing-team": GroupRoles(grants={"billing": Role.EDITOR}),
    "billing-oncall": GroupRoles(grants={"billing": Role.OPERATOR, "web": Role.VIEWER}),
    "everyone": GroupRoles(grants={"*": Role.VIEWER}),
}


# -- claims -> roles ------------------------------------------------------------------------
def test_groups_map_to_the_strongest_role_per_belfry_group() -> None:
    got = entitlements_for(["billing-oncall", "billing-team", "everyone", "unmapped"], ROLES)
    assert not got.global_admin
    assert got.grants == {"*": Role.VIEWER, "billing": Role.EDITOR, "web": Role.VIEWER}
    # The order of the groups does not matter.
    again = entitlements_for(["everyone", "billing-team", "billing-oncall"], ROLES)
    assert again.grants == got.grants


def test_a_mapped_group_can_make_a_global_admin() -> None:
    got = entitlements_for(["sre"], ROLES)
    assert got.global_admin and got.grants == {} and not got.empty


def test_no_mapped_group_gives_nothing() -> None:
    assert entitlements_for(["Billing-Team", "sales"], ROLES).empty  # names are exact
    assert entitlements_for([], ROLES).empty


def test_groups_claim_shapes() -> None:
    assert groups_from({"groups": ["a", "b"]}, "groups") == ["a", "b"]
    assert groups_from({"groups": "a"}, "groups") == ["a"]
    assert groups_from({"groups": ["a", 3, None]}, "groups") == ["a"]
    assert groups_from({"roles": ["a"]}, "groups") == []
    assert groups_from({"groups": {"a": 1}}, "groups") == []


def test_user_name_from_the_claim_else_the_email() -> None:
    claims = {"preferred_username": "Alice", "email": "al@example.com"}
    assert user_name_from(claims, "preferred_username") == ("alice", "preferred_username")
    assert user_name_from({"email": "Al@Example.com"}, "preferred_username") == (
        "al@example.com",
        "email",
    )
    assert user_name_from({"upn": "bob@corp"}, "upn") == ("bob@corp", "upn")


def test_user_name_refuses_an_unverified_email_or_none_at_all() -> None:
    with pytest.raises(ValueError, match="not verified"):
        user_name_from({"email": "al@example.com", "email_verified": False}, "preferred_username")
    with pytest.raises(ValueError, match="neither 'preferred_username' nor 'email'"):
        user_name_from({"sub": "123"}, "preferred_username")
    # A verified-or-unsaid address is fine; a username claim needs no e-mail check.
    assert user_name_from(
        {"preferred_username": "al", "email_verified": False}, "preferred_username"
    )


@pytest.mark.parametrize("path", ["/", "/jobs", "/runs?job=a%2Fb&state=failed", "/x#frag"])
def test_local_paths_are_accepted(path: str) -> None:
    assert local_path(path) == path


@pytest.mark.parametrize(
    "path",
    ["", "jobs", "//evil.example/", "/\\evil.example", "https://evil.example/", "/a\nb", "/a\\b"],
)
def test_other_sites_are_refused_as_next(path: str) -> None:
    with pytest.raises(ValueError, match="next: must be a path on this server"):
        local_path(path)


# -- the oidc: section ----------------------------------------------------------------------
def _config(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    secret = tmp_path / "oidc-secret"
    secret.write_text("s3cret\n")
    config: dict[str, Any] = {
        "issuer": "https://sso.example.com",
        "client_id": "belfry",
        "client_secret_file": str(secret),
        "roles": {"sre": {"global_admin": True}, "billing-team": {"billing": "editor"}},
    }
    config.update(changes)
    return {key: value for key, value in config.items() if value is not None}


def test_a_full_oidc_section(tmp_path: Path) -> None:
    settings = parse_oidc_settings(
        _config(
            tmp_path,
            username_claim="email",
            groups_claim="roles",
            scopes=["openid", "email", "groups"],
            redirect_uri="https://belfry.example.com/api/v1/oidc/callback",
            roles={
                "sre": {"global_admin": True},
                "billing-team": {"billing": "editor"},
                "everyone": {"*": "viewer"},
            },
        )
    )
    assert settings.client_secret == "s3cret"  # read from the file, stripped
    assert "s3cret" not in repr(settings)
    assert settings.username_claim == "email" and settings.groups_claim == "roles"
    assert settings.scopes == ("openid", "email", "groups")
    assert settings.roles == {
        "sre": GroupRoles(global_admin=True),
        "billing-team": GroupRoles(grants={"billing": Role.EDITOR}),
        "everyone": GroupRoles(grants={"*": Role.VIEWER}),
    }


def test_defaults(tmp_path: Path) -> None:
    settings = parse_oidc_settings(_config(tmp_path))
    assert (settings.username_claim, settings.groups_claim) == ("preferred_username", "groups")
    assert settings.scopes == ("openid", "profile", "email")
    assert settings.redirect_uri is None
    inline = parse_oidc_settings(_config(tmp_path, client_secret_file=None, client_secret="x"))
    assert inline.client_secret == "x"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"issuer": None}, "issuer: required"),
        ({"issuer": "sso.example.com"}, "issuer: expected an https:// URL"),
        ({"issuer": "http://sso.example.com"}, "issuer: must be https://"),
        ({"issuer": "https://sso.example.com/?x=1"}, "issuer: must have no query"),
        ({"client_id": ""}, "client_id: expected a non-empty string"),
        ({"client_secret_file": None}, "client_secret_file: required"),
        ({"client_secret": "x"}, "client_secret_file: required (or client_secret"),
        ({"client_secret_file": "/nonexistent/secret"}, "client_secret_file: cannot read"),
        ({"roles": None}, "roles: required"),
        ({"roles": {}}, "roles: expected a mapping"),
        ({"roles": {"sre": "admin"}}, "roles: sre: expected a mapping"),
        ({"roles": {"sre": {"billing": "owner"}}}, "roles: sre: billing: role: must be one of"),
        ({"roles": {"sre": {"Billing!": "viewer"}}}, "roles: sre: 'Billing!': a Belfry group"),
        ({"roles": {"sre": {"global_admin": "yes"}}}, "roles: sre: global_admin: expected true"),
        ({"roles": {True: {"a": "viewer"}}}, "roles: True: quote the group name"),
        ({"scopes": ["email"]}, "scopes: must include openid"),
        ({"scopes": "openid"}, "scopes: expected a list"),
        ({"redirect_uri": "ftp://x/cb"}, "redirect_uri: expected an https:// URL"),
        ({"client_secrets": "x"}, "client_secrets: unknown setting"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    config = _config(tmp_path)
    config.update(changes)
    config = {key: value for key, value in config.items() if value is not None}
    with pytest.raises(ValueError) as raised:
        parse_oidc_settings(config)
    assert str(raised.value).startswith(message), str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_provider_on_this_host_may_speak_http(tmp_path: Path) -> None:
    for issuer in ("http://127.0.0.1:8999", "http://localhost:8999/realms/x", "http://[::1]:9"):
        assert parse_oidc_settings(_config(tmp_path, issuer=issuer)).issuer == issuer


# -- the sealed login in progress -----------------------------------------------------------
PENDING = PendingLogin(
    state="state-marker-1234", nonce="no", code_verifier="ve" * 30, next_path="/jobs/marker"
)


def test_the_login_state_round_trips_and_expires() -> None:
    clock = FakeClock(T0)
    box = LoginStateBox(b"k" * 44, clock)
    sealed = box.seal(PENDING)
    # Encrypted, not only signed (markers long enough not to turn up in random base64).
    assert "state-marker-1234" not in sealed and "/jobs/marker" not in sealed
    assert box.open(sealed) == PENDING
    clock.current += timedelta(minutes=9)
    assert box.open(sealed) == PENDING
    clock.current += timedelta(minutes=2)
    with pytest.raises(LoginInvalid, match="expired"):
        box.open(sealed)


def test_a_tampered_or_foreign_login_state_is_refused() -> None:
    clock = FakeClock(T0)
    sealed = LoginStateBox(b"k" * 44, clock).seal(PENDING)
    with pytest.raises(LoginInvalid):
        LoginStateBox(b"x" * 44, clock).open(sealed)
    tampered = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    with pytest.raises(LoginInvalid):
        LoginStateBox(b"k" * 44, clock).open(tampered)


# -- what a login does to accounts ----------------------------------------------------------
def _sso(store: SqlStore) -> tuple[SingleSignOn, AccountService, AuditLog]:
    clock = FakeClock(T0)
    accounts = AccountService(store, clock)
    audit = AuditLog(store, clock)
    settings = OidcSettings(
        issuer="https://sso.example.com", client_id="belfry", client_secret="s", roles=ROLES
    )
    sso = SingleSignOn(
        settings,
        redirect_uri="https://belfry.example.com/api/v1/oidc/callback",
        accounts=accounts,
        audit=audit,
        clock=clock,
        state_key=b"k" * 44,
    )
    return sso, accounts, audit


def _claims(name: str, *groups: str) -> dict[str, Any]:
    return {"sub": f"id-{name}", "preferred_username": name, "groups": list(groups)}


async def _actions(store: SqlStore, actor: str) -> list[tuple[str, str | None]]:
    entries = await store.list_audit(actor=actor, limit=100)
    return sorted((record.entry.action, record.entry.target) for record in entries)


async def test_first_login_creates_a_passwordless_user_with_the_mapped_roles(
    store: SqlStore,
) -> None:
    sso, accounts, _ = _sso(store)
    login = await sso.sign_in(_claims("carol", "billing-team", "everyone"), address="10.0.0.1")
    assert login.principal.name == "carol"
    assert dict(login.principal.grants) == {"*": Role.VIEWER, "billing": Role.EDITOR}
    user = await accounts.get("carol")
    assert user.password_hash is None and not user.global_admin
    session = await accounts.session(login.session)
    assert session is not None and session[1] == login.csrf_token
    assert await _actions(store, "carol") == [
        ("grant.set", "carol on *"),
        ("grant.set", "carol on billing"),
        ("login", None),
        ("user.create", "carol"),
    ]


async def test_each_login_makes_the_roles_what_the_groups_give(store: SqlStore) -> None:
    sso, accounts, _ = _sso(store)
    await sso.sign_in(_claims("dave", "billing-team", "everyone"), address=None)
    first_audit = len(await store.list_audit(actor="dave", limit=100))
    login = await sso.sign_in(_claims("dave", "sre", "billing-oncall"), address=None)
    assert login.principal.global_admin
    assert dict(login.principal.grants) == {"billing": Role.OPERATOR, "web": Role.VIEWER}
    entries = (await store.list_audit(actor="dave", limit=100))[: -first_audit or None]
    changes = sorted(
        (e.entry.action, e.entry.target, e.entry.before, e.entry.after) for e in entries
    )
    assert changes == [
        ("grant.remove", "dave on *", {"role": "viewer"}, {"via": "oidc"}),
        ("grant.set", "dave on billing", {"role": "editor"}, {"role": "operator", "via": "oidc"}),
        ("grant.set", "dave on web", None, {"role": "viewer", "via": "oidc"}),
        ("login", None, None, {"via": "oidc"}),
        ("user.update", "dave", {"global_admin": False}, {"global_admin": True, "via": "oidc"}),
    ]
    # Back out of sre: global admin goes too.
    again = await sso.sign_in(_claims("dave", "billing-oncall"), address=None)
    assert not again.principal.global_admin
    assert not (await accounts.get("dave")).global_admin


async def test_an_unchanged_login_changes_nothing(store: SqlStore) -> None:
    sso, _, _ = _sso(store)
    await sso.sign_in(_claims("erin", "everyone"), address=None)
    before = len(await store.list_audit(actor="erin", limit=100))
    await sso.sign_in(_claims("erin", "everyone"), address=None)
    after = await store.list_audit(actor="erin", limit=100)
    assert len(after) == before + 1 and after[0].entry.action == "login"


async def test_no_mapped_group_is_refused_and_takes_the_old_roles_away(store: SqlStore) -> None:
    sso, accounts, _ = _sso(store)
    with pytest.raises(LoginRefused, match=r"none of your groups .*sales.* gives a role"):
        await sso.sign_in(_claims("frank", "sales"), address=None)
    assert await store.get_user("frank") is None  # not even created
    await sso.sign_in(_claims("gina", "billing-team"), address=None)
    with pytest.raises(LoginRefused):
        await sso.sign_in(_claims("gina", "sales"), address=None)
    assert await accounts.grants("gina") == []  # her tokens can do nothing either
    assert ("grant.remove", "gina on billing") in await _actions(store, "gina")


async def test_local_and_disabled_accounts_are_refused(store: SqlStore) -> None:
    sso, accounts, _ = _sso(store)
    await accounts.create_user("root", "correct horse battery staple", global_admin=True)
    with pytest.raises(LoginRefused, match="local Belfry account with a password"):
        await sso.sign_in(_claims("ROOT", "sre"), address=None)
    await sso.sign_in(_claims("hank", "everyone"), address=None)
    await accounts.update("hank", disabled=True)
    with pytest.raises(LoginRefused, match="hank is disabled"):
        await sso.sign_in(_claims("hank", "everyone"), address=None)
    failed = await store.list_audit(action="login.failed", limit=10)
    assert {(e.entry.actor, e.entry.after["reason"]) for e in failed} == {
        ("root", "a local account with a password"),
        ("hank", "disabled"),
    }


async def test_a_name_belfry_cannot_use_is_refused(store: SqlStore) -> None:
    sso, _, _ = _sso(store)
    with pytest.raises(LoginRefused, match="preferred_username cannot be a Belfry user name"):
        await sso.sign_in(_claims("Bob Smith", "everyone"), address=None)
