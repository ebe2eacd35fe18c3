"""Single sign-on settings, and who a login through the identity provider is in Belfry.

Pure: the ``oidc:`` section of the server's config file checked into ``OidcSettings``
(one-line errors naming the key), and the rules that turn an ID token's claims into a
Belfry user name and the roles that user holds (``entitlements_for``). The login flow
itself, which talks to the provider and the store, is ``services.oidc_login``.

The identity provider is the source of truth for the users who log in through it: the
roles its groups map to are set on every login, and roles it no longer gives are removed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from belfry.core.names import NAME_RULE, is_valid_name
from belfry.core.permissions import ALL_GROUPS, Role, role_for

__all__ = [
    "DEFAULT_SCOPES",
    "Entitlements",
    "GroupRoles",
    "OidcSettings",
    "entitlements_for",
    "groups_from",
    "is_loopback_url",
    "local_path",
    "parse_oidc_settings",
    "user_name_from",
]

DEFAULT_SCOPES = ("openid", "profile", "email")
_KEYS = (
    "issuer",
    "client_id",
    "client_secret",
    "client_secret_file",
    "username_claim",
    "groups_claim",
    "roles",
    "scopes",
    "redirect_uri",
)
# The key of a role mapping that makes a global admin rather than naming a Belfry group.
GLOBAL_ADMIN_KEY = "global_admin"


@dataclass(frozen=True)
class GroupRoles:
    """What membership of one identity-provider group gives in Belfry."""

    global_admin: bool = False
    grants: Mapping[str, Role] = field(default_factory=dict)


@dataclass(frozen=True)
class OidcSettings:
    """The ``oidc:`` section of the server's config file, checked."""

    issuer: str
    client_id: str
    # Never printed with the settings (a repr ends up in logs and tracebacks).
    client_secret: str = field(repr=False)
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"
    # Identity-provider group -> what it gives.
    roles: Mapping[str, GroupRoles] = field(default_factory=dict)
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    # Where the provider sends the browser back; None: the server's public URL's
    # /api/v1/oidc/callback. Set it when a proxy serves Belfry under another URL.
    redirect_uri: str | None = None


@dataclass(frozen=True)
class Entitlements:
    """What a user holds in Belfry: global admin or not, and a role per group."""

    global_admin: bool = False
    grants: Mapping[str, Role] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.global_admin and not self.grants


def entitlements_for(groups: Iterable[str], roles: Mapping[str, GroupRoles]) -> Entitlements:
    """The union of what ``groups`` map to: the strongest role per Belfry group, and
    global admin if any group makes one. Groups the mapping does not name give nothing."""
    global_admin = False
    grants: dict[str, Role] = {}
    for group in groups:
        given = roles.get(group)
        if given is None:
            continue
        global_admin = global_admin or given.global_admin
        for belfry_group, role in given.grants.items():
            held = grants.get(belfry_group)
            if held is None or role.rank > held.rank:
                grants[belfry_group] = role
    return Entitlements(global_admin, dict(sorted(grants.items())))


def groups_from(claims: Mapping[str, Any], groups_claim: str) -> list[str]:
    """The groups in ``claims``: a list of names, or one name (some providers send a
    single group as a string). Anything else counts as no groups."""
    value = claims.get(groups_claim)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def user_name_from(claims: Mapping[str, Any], username_claim: str) -> tuple[str, str]:
    """The Belfry user name a login stands for, and the claim it came from: the
    ``username_claim``, else ``email``; lower-cased (Belfry's names are). ValueError with
    the reason when neither is usable.

    An e-mail address the provider says it has not verified is refused: anyone could
    otherwise claim a colleague's address at a provider that lets users type their own."""
    source = username_claim
    value = claims.get(username_claim)
    if value is None or value == "":
        source, value = "email", claims.get("email")
    if not isinstance(value, str) or not value.strip():
        raise ValueError(
            f"the identity provider sent neither {username_claim!r} nor 'email' to name you by"
        )
    if source == "email" and claims.get("email_verified") is False:
        raise ValueError(f"the identity provider has not verified the e-mail address {value!r}")
    return value.strip().lower(), source


def local_path(value: str) -> str:
    """``value`` if it is a path on this server (where to go after logging in); ValueError
    otherwise, so that the login cannot be used to send people to another site."""
    parts = urlsplit(value)
    if (
        not value.startswith("/")
        or value.startswith(("//", "/\\"))
        or parts.scheme
        or parts.netloc
        or any(ord(character) < 0x20 or character == "\\" for character in value)
        or len(value) > 2000
    ):
        raise ValueError(f"next: must be a path on this server such as /jobs, got {value!r}")
    return value


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_oidc_settings(data: Any) -> OidcSettings:
    """The ``oidc:`` section checked; ValueError naming the key (``roles: sre: ...``).

    ``client_secret_file`` is read here, so that an unreadable file stops the server at
    start rather than at the first login."""
    if not isinstance(data, Mapping):
        raise ValueError(f"expected a mapping with the keys {', '.join(_KEYS[:3])}, ...")
    unknown = sorted(str(key) for key in data if key not in _KEYS)
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown setting (known: {', '.join(sorted(_KEYS))})")
    issuer = _url(data, "issuer", required=True)
    assert issuer is not None
    parts = urlsplit(issuer)
    if parts.query or parts.fragment:
        raise ValueError(f"issuer: must have no query or fragment, got {issuer!r}")
    return OidcSettings(
        issuer=issuer,
        client_id=_text(data, "client_id", required=True) or "",
        client_secret=_client_secret(data),
        username_claim=_text(data, "username_claim") or "preferred_username",
        groups_claim=_text(data, "groups_claim") or "groups",
        roles=_roles(data.get("roles")),
        scopes=_scopes(data.get("scopes")),
        redirect_uri=_url(data, "redirect_uri"),
    )


def _text(data: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        what = "required: " if value is None else ""
        raise ValueError(f"{key}: {what}expected a non-empty string, got {value!r}")
    return value.strip()


def _url(data: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    value = _text(data, key, required=required)
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{key}: expected an https:// URL, got {value!r}")
    # Plain HTTP would let anyone on the path read codes and tokens; a provider on this
    # very host (a test or a development set-up) is the one exception.
    if parts.scheme == "http" and not is_loopback_url(value):
        raise ValueError(f"{key}: must be https:// (http:// only on this host), got {value!r}")
    return value


def _client_secret(data: Mapping[str, Any]) -> str:
    given = [key for key in ("client_secret", "client_secret_file") if data.get(key) is not None]
    if len(given) != 1:
        raise ValueError(
            "client_secret_file: required (or client_secret, which puts the secret in the "
            "config file), and not both"
        )
    if given[0] == "client_secret":
        return _text(data, "client_secret") or ""
    path = Path(_text(data, "client_secret_file") or "")
    try:
        secret = path.read_text().strip()
    except OSError as error:
        raise ValueError(f"client_secret_file: cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"client_secret_file: {path} is not text") from None
    if not secret:
        raise ValueError(f"client_secret_file: {path} is empty")
    return secret


def _scopes(value: Any) -> tuple[str, ...]:
    if value is None:
        return DEFAULT_SCOPES
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"scopes: expected a list of scope names, got {value!r}")
    if "openid" not in value:
        raise ValueError("scopes: must include openid (an OpenID Connect login needs it)")
    return tuple(dict.fromkeys(value))


def _roles(value: Any) -> dict[str, GroupRoles]:
    if value is None:
        raise ValueError(
            "roles: required: map identity-provider groups to Belfry roles "
            "(e.g. sre: {global_admin: true}); without it nobody could do anything"
        )
    if not isinstance(value, Mapping) or not value:
        raise ValueError(
            f"roles: expected a mapping of identity-provider groups to roles, got {value!r}"
        )
    roles: dict[str, GroupRoles] = {}
    for idp_group, given in value.items():
        # YAML reads some bare keys as numbers or booleans (yes:, 2024:): quote them.
        if not isinstance(idp_group, str) or not idp_group:
            raise ValueError(f"roles: {idp_group!r}: quote the group name (a string)")
        label = f"roles: {idp_group}"
        if not isinstance(given, Mapping) or not given:
            raise ValueError(
                f"{label}: expected a mapping such as {{billing: editor}} or "
                f"{{global_admin: true}}, got {given!r}"
            )
        global_admin = False
        grants: dict[str, Role] = {}
        for key, role in given.items():
            if key == GLOBAL_ADMIN_KEY:
                if not isinstance(role, bool):
                    raise ValueError(f"{label}: global_admin: expected true or false, got {role!r}")
                global_admin = role
                continue
            if not isinstance(key, str) or not (key == ALL_GROUPS or is_valid_name(key)):
                raise ValueError(f"{label}: {key!r}: a Belfry group name {NAME_RULE} (or *)")
            if not isinstance(role, str):
                raise ValueError(f"{label}: {key}: expected a role name, got {role!r}")
            try:
                grants[key] = role_for(role)
            except ValueError as error:
                raise ValueError(f"{label}: {key}: {error}") from None
        roles[idp_group] = GroupRoles(global_admin, grants)
    return roles
