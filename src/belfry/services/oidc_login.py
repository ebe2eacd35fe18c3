"""Logging in through an OpenID Connect identity provider (issue 6: single sign-on).

The authorization code flow with PKCE (S256), a nonce and a state, for a confidential
client: ``SingleSignOn.begin`` makes the provider's authorization URL and a sealed record
of the login in progress, which the browser keeps in a short-lived cookie (so any server
replica can finish it: they share the secret key, not their memory);
``SingleSignOn.finish`` checks the state against it, redeems the code at the provider's
token endpoint, validates the ID token (signature against the provider's published keys,
issuer, audience, expiry, nonce) and signs the user in: created on their first login
(without a password), refused if disabled, their roles set from the provider's groups on
every login (``services.sso``), and a normal Belfry session started.

Authlib provides the OAuth/OIDC pieces (authorization URL, PKCE challenge, ID token claim
rules) and joserfc, Authlib's JOSE library, the signature checks; the HTTP calls go
through httpx like the rest of Belfry (Authlib's own httpx client is in the middle of a
move to another HTTP package and warns on import).
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from belfry.core.permissions import ALL_GROUPS
from belfry.core.records import UserRecord
from belfry.ports.clock import Clock
from belfry.services.accounts import AccountError, AccountService, Login, UnknownUser
from belfry.services.audit import AuditLog
from belfry.services.sso import (
    Entitlements,
    OidcSettings,
    entitlements_for,
    groups_from,
    is_loopback_url,
    local_path,
    user_name_from,
)

__all__ = [
    "LOGIN_TIMEOUT",
    "LoginInvalid",
    "LoginRefused",
    "LoginStateBox",
    "OidcClient",
    "PendingLogin",
    "ProviderUnavailable",
    "SingleSignOn",
    "SsoError",
    "read_state_key",
]

log = logging.getLogger(__name__)

# How long a login may take at the provider (and the life of its state cookie).
LOGIN_TIMEOUT = timedelta(minutes=10)
# Clock skew allowed between the provider and this server on the ID token's times.
_LEEWAY_SECONDS = 60
_HTTP_TIMEOUT = httpx.Timeout(10.0)
# The provider's metadata is looked up again after this long (a changed key set is
# looked up at once: when a token names a key the cached set lacks).
_METADATA_LIFETIME = timedelta(hours=1)
# Asymmetric signatures only: HS256 would make the client secret a signing key, and
# "none" is no signature at all.
_ACCEPTED_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
    "Ed25519",
)
_STATE_KEY_PURPOSE = b"belfry oidc login state v1"


class SsoError(Exception):
    """A single sign-on login that cannot go on; the message is one line for the user."""


class LoginInvalid(SsoError):
    """The login's request is wrong: no login in progress, a state that does not match,
    a code or ID token the checks refuse (answered 400)."""


class LoginRefused(SsoError):
    """The provider vouches for the person, but Belfry does not let them in: disabled, a
    local account, no group mapped to a role (answered 403)."""


class ProviderUnavailable(SsoError):
    """The identity provider cannot be reached or answers nonsense (answered 502)."""


@dataclass(frozen=True)
class PendingLogin:
    """A login in progress, kept by the browser (sealed) between the redirect to the
    provider and the one back."""

    state: str
    nonce: str
    code_verifier: str
    next_path: str


def read_state_key(path: Path) -> bytes:
    """The server's secret key file's contents: the login state cookies are sealed under
    a key derived from it, so that every replica sharing it can open them."""
    return path.read_bytes().strip()


class LoginStateBox:
    """Seals a ``PendingLogin`` for a cookie: encrypted and authenticated (Fernet) under a
    key of its own derived from the server's secret key, and refused after
    ``LOGIN_TIMEOUT``."""

    def __init__(self, secret_key: bytes, clock: Clock) -> None:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=_STATE_KEY_PURPOSE
        ).derive(secret_key)
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))
        self._clock = clock

    def seal(self, pending: PendingLogin) -> str:
        payload = json.dumps(
            {
                "state": pending.state,
                "nonce": pending.nonce,
                "verifier": pending.code_verifier,
                "next": pending.next_path,
            }
        ).encode()
        now = int(self._clock.now().timestamp())
        return self._fernet.encrypt_at_time(payload, now).decode("ascii")

    def open(self, sealed: str) -> PendingLogin:
        now = int(self._clock.now().timestamp())
        try:
            payload = self._fernet.decrypt_at_time(
                sealed.encode("ascii"), int(LOGIN_TIMEOUT.total_seconds()), now
            )
            data = json.loads(payload)
            return PendingLogin(data["state"], data["nonce"], data["verifier"], data["next"])
        except (InvalidToken, UnicodeError, ValueError, KeyError, TypeError):
            raise LoginInvalid(
                "the login in progress has expired or is not this server's: start again "
                "at /api/v1/oidc/login"
            ) from None


@dataclass(frozen=True)
class ProviderMetadata:
    """What Belfry uses of the provider's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: tuple[str, ...]
    # client_secret_basic (the default of the spec) or client_secret_post.
    token_auth: str


class OidcClient:
    """The provider as a relying party sees it: discovery, the authorization URL, the
    token endpoint, the key set. The metadata and keys are cached in memory."""

    def __init__(self, settings: OidcSettings, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self._metadata: ProviderMetadata | None = None
        self._metadata_until = 0.0
        self._keys: KeySet | None = None

    async def metadata(self) -> ProviderMetadata:
        if self._metadata is not None and time.monotonic() < self._metadata_until:
            return self._metadata
        issuer = self._settings.issuer
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        data = await self._get_json(url, "its discovery document")
        # OpenID Connect Discovery 1.0, 4.3: the document must name the very issuer it
        # was fetched for, or tokens from another issuer could pass as this one's.
        if data.get("issuer") != issuer:
            raise ProviderUnavailable(
                f"the identity provider's discovery document at {url} names the issuer "
                f"{data.get('issuer')!r}, not {issuer!r} (oidc: issuer must match exactly)"
            )
        endpoints = {
            key: self._endpoint(data, key, url)
            for key in ("authorization_endpoint", "token_endpoint", "jwks_uri")
        }
        offered = data.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = tuple(alg for alg in _ACCEPTED_ALGORITHMS if alg in offered)
        if not algorithms:
            raise ProviderUnavailable(
                f"the identity provider signs ID tokens only with {offered}: Belfry accepts "
                f"{', '.join(_ACCEPTED_ALGORITHMS)}"
            )
        methods = data.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        token_auth = (
            "client_secret_post"
            if "client_secret_post" in methods and "client_secret_basic" not in methods
            else "client_secret_basic"
        )
        metadata = ProviderMetadata(
            issuer=issuer, algorithms=algorithms, token_auth=token_auth, **endpoints
        )
        if self._metadata is None or metadata.jwks_uri != self._metadata.jwks_uri:
            self._keys = None
        self._metadata = metadata
        self._metadata_until = time.monotonic() + _METADATA_LIFETIME.total_seconds()
        return metadata

    async def authorization_url(self, pending: PendingLogin, redirect_uri: str) -> str:
        metadata = await self.metadata()
        url: str = prepare_grant_uri(
            metadata.authorization_endpoint,
            client_id=self._settings.client_id,
            response_type="code",
            redirect_uri=redirect_uri,
            scope=" ".join(self._settings.scopes),
            state=pending.state,
            nonce=pending.nonce,
            code_challenge=create_s256_code_challenge(pending.code_verifier),
            code_challenge_method="S256",
        )
        return url

    async def redeem(self, code: str, pending: PendingLogin, redirect_uri: str) -> dict[str, Any]:
        """The ID token's claims for ``code``, validated."""
        metadata = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": pending.code_verifier,
        }
        headers = {"Accept": "application/json"}
        if metadata.token_auth == "client_secret_post":
            form |= {
                "client_id": self._settings.client_id,
                "client_secret": self._settings.client_secret,
            }
        else:
            pair = f"{self._settings.client_id}:{self._settings.client_secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        url = metadata.token_endpoint
        try:
            async with httpx.AsyncClient(timeout=_HTTP_TIMEOUT) as http:
                response = await http.post(url, data=form, headers=headers)
        except httpx.HTTPError as error:
            raise ProviderUnavailable(
                f"the identity provider's token endpoint {url} is unreachable: {_reason(error)}"
            ) from None
        answer = _json_object(response)
        if response.status_code != 200:
            raise _token_refusal(response.status_code, answer, url)
        id_token = answer.get("id_token") if answer else None
        if not isinstance(id_token, str):
            raise ProviderUnavailable(
                f"the identity provider's token endpoint {url} sent no ID token "
                "(is the openid scope allowed for this client?)"
            )
        access_token = answer.get("access_token") if answer else None
        return await self._verify(id_token, pending.nonce, access_token, metadata)

    async def _verify(
        self, id_token: str, nonce: str, access_token: object, metadata: ProviderMetadata
    ) -> dict[str, Any]:
        registry = JWSRegistry(algorithms=list(metadata.algorithms), strict_check_header=False)
        try:
            try:
                token = jwt.decode(id_token, await self._key_set(metadata), registry=registry)
            except InvalidKeyIdError:
                # Signed with a key published since the set was fetched: the provider
                # rotated its keys.
                token = jwt.decode(
                    id_token, await self._key_set(metadata, refresh=True), registry=registry
                )
            claims = CodeIDToken(
                token.claims,
                token.header,
                {
                    "iss": {"essential": True, "value": metadata.issuer},
                    "aud": {"essential": True, "value": self._settings.client_id},
                    "sub": {"essential": True},
                    "exp": {"essential": True},
                },
                {
                    "nonce": nonce,
                    "client_id": self._settings.client_id,
                    "access_token": access_token if isinstance(access_token, str) else None,
                },
            )
            claims.validate(now=int(self._clock.now().timestamp()), leeway=_LEEWAY_SECONDS)
        except JoseError as error:
            raise LoginInvalid(f"the ID token was refused: {_jose_reason(error)}") from None
        return dict(token.claims)

    async def _key_set(self, metadata: ProviderMetadata, *, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            data = await self._get_json(metadata.jwks_uri, "its key set")
            try:
                self._keys = KeySet.import_key_set(data)  # type: ignore[arg-type]
            except (JoseError, ValueError, KeyError, TypeError) as error:
                raise ProviderUnavailable(
                    f"the identity provider's key set at {metadata.jwks_uri} is unusable: "
                    f"{_reason(error)}"
                ) from None
        return self._keys

    def _endpoint(self, data: Mapping[str, Any], key: str, url: str) -> str:
        value = data.get(key)
        if not isinstance(value, str) or not value:
            raise ProviderUnavailable(
                f"the identity provider's discovery document {url} has no {key}"
            )
        if not value.startswith("https://") and not (
            value.startswith("http://") and is_loopback_url(value)
        ):
            raise ProviderUnavailable(
                f"the identity provider's {key} {value!r} is not https:// (codes and tokens "
                "would cross the network in clear)"
            )
        return value

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=_HTTP_TIMEOUT) as http:
                response = await http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as error:
            raise ProviderUnavailable(
                f"the identity provider is unreachable ({what} at {url}): {_reason(error)}"
            ) from None
        data = _json_object(response)
        if response.status_code != 200 or data is None:
            raise ProviderUnavailable(
                f"the identity provider answered {response.status_code} "
                f"{'' if data is not None else 'without JSON '}for {what} at {url}"
            )
        return data


class SingleSignOn:
    """The login flow and what it does to accounts (see the module's docstring)."""

    def __init__(
        self,
        settings: OidcSettings,
        *,
        redirect_uri: str,
        accounts: AccountService,
        audit: AuditLog,
        clock: Clock,
        state_key: bytes,
        client: OidcClient | None = None,
    ) -> None:
        self.settings = settings
        self.redirect_uri = redirect_uri
        self._accounts = accounts
        self._audit = audit
        self._box = LoginStateBox(state_key, clock)
        self._client = client or OidcClient(settings, clock)

    async def begin(self, next_path: str) -> tuple[str, str]:
        """The provider's authorization URL to send the browser to, and the sealed login
        in progress for its cookie. ``next_path``: where to go once logged in."""
        try:
            path = local_path(next_path)
        except ValueError as error:
            raise LoginInvalid(str(error)) from None
        pending = PendingLogin(
            state=secrets.token_urlsafe(24),
            nonce=secrets.token_urlsafe(24),
            # RFC 7636: 43 to 128 characters of [A-Za-z0-9-._~]; 64 bytes give 86.
            code_verifier=secrets.token_urlsafe(64),
            next_path=path,
        )
        url = await self._client.authorization_url(pending, self.redirect_uri)
        return url, self._box.seal(pending)

    async def finish(
        self,
        *,
        sealed: str | None,
        state: str | None,
        code: str | None,
        error: str | None,
        error_description: str | None,
        address: str | None,
    ) -> tuple[Login, str]:
        """The provider sent the browser back: a new session and where to go next."""
        if not sealed:
            raise LoginInvalid(
                "no login in progress in this browser (or it took longer than "
                f"{LOGIN_TIMEOUT.total_seconds() / 60:.0f} minutes): start again at "
                "/api/v1/oidc/login"
            )
        pending = self._box.open(sealed)
        # The state ties the answer to the login this browser started: without the check
        # anyone could log a victim's browser in to the attacker's account.
        if not state or not secrets.compare_digest(state.encode(), pending.state.encode()):
            raise LoginInvalid(
                "state: does not match the login in progress in this browser: start again "
                "at /api/v1/oidc/login"
            )
        if error:
            detail = f" ({_one_line(error_description)})" if error_description else ""
            raise LoginInvalid(f"the identity provider refused the login: {error}{detail}")
        if not code:
            raise LoginInvalid("code: missing from the identity provider's answer")
        claims = await self._client.redeem(code, pending, self.redirect_uri)
        return await self.sign_in(claims, address=address), pending.next_path

    async def sign_in(self, claims: Mapping[str, Any], *, address: str | None) -> Login:
        """Sign in the person the provider vouches for with ``claims`` (validated): their
        user, made on their first login, their roles from the mapping, a session."""
        try:
            name, source = user_name_from(claims, self.settings.username_claim)
        except ValueError as error:
            raise LoginRefused(str(error)) from None
        groups = groups_from(claims, self.settings.groups_claim)
        wanted = entitlements_for(groups, self.settings.roles)
        user = await self._find(name)
        if user is not None and user.password_hash is not None:
            # Names at the provider are not Belfry's: a provider user called "admin" must
            # not become the local admin.
            await self._refuse_audit(name, address, "a local account with a password")
            raise LoginRefused(
                f"{name} is a local Belfry account with a password: single sign-on does not "
                "take it over (log in with its password)"
            )
        if user is not None and user.disabled:
            await self._refuse_audit(name, address, "disabled")
            raise LoginRefused(f"{name} is disabled in Belfry")
        if wanted.empty:
            if user is not None:
                # The provider no longer gives them anything: neither may their tokens.
                await self._sync(name, wanted, address)
            await self._refuse_audit(name, address, "no group mapped to a role")
            shown = ", ".join(groups[:10]) + (", ..." if len(groups) > 10 else "")
            raise LoginRefused(
                f"{name}: none of your groups at the identity provider ({shown or 'none'}) "
                "gives a role in Belfry: ask a Belfry admin"
            )
        if user is None:
            await self._create(name, source, wanted, address)
        await self._sync(name, wanted, address)
        login = await self._accounts.start_session(name)
        if login is None:  # disabled or deleted in the meantime
            raise LoginRefused(f"{name} is disabled in Belfry")
        await self._audit.record(login.principal, "login", address=address, after={"via": "oidc"})
        return login

    async def _create(
        self, name: str, source: str, wanted: Entitlements, address: str | None
    ) -> None:
        try:
            await self._accounts.create_user(name, None, global_admin=wanted.global_admin)
        except AccountError as error:
            if await self._find(name) is not None:
                return  # made by a login of the same user at the same moment
            raise LoginRefused(
                f"the identity provider's {source} cannot be a Belfry user name: {error} "
                "(see oidc: username_claim)"
            ) from None
        await self._audit.record(
            name,
            "user.create",
            address=address,
            target=name,
            after={"global_admin": wanted.global_admin, "via": "oidc"},
        )

    async def _sync(self, name: str, wanted: Entitlements, address: str | None) -> None:
        """Make the user's roles what the provider's groups give, auditing each change."""
        user = await self._accounts.get(name)
        if user.global_admin != wanted.global_admin:
            await self._accounts.update(name, global_admin=wanted.global_admin)
            await self._audit.record(
                name,
                "user.update",
                address=address,
                target=name,
                before={"global_admin": user.global_admin},
                after={"global_admin": wanted.global_admin, "via": "oidc"},
            )
        for change in await self._accounts.set_grants(name, wanted.grants):
            group = None if change.group == ALL_GROUPS else change.group
            target = f"{name} on {change.group}"
            if change.after is None:
                await self._audit.record(
                    name,
                    "grant.remove",
                    address=address,
                    group=group,
                    target=target,
                    before={"role": change.before},
                    after={"via": "oidc"},
                )
            else:
                await self._audit.record(
                    name,
                    "grant.set",
                    address=address,
                    group=group,
                    target=target,
                    before={"role": change.before} if change.before else None,
                    after={"role": change.after, "via": "oidc"},
                )

    async def _find(self, name: str) -> UserRecord | None:
        try:
            return await self._accounts.get(name)
        except UnknownUser:
            return None

    async def _refuse_audit(self, name: str, address: str | None, reason: str) -> None:
        await self._audit.record(
            name, "login.failed", address=address, after={"via": "oidc", "reason": reason}
        )


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _token_refusal(status: int, answer: dict[str, Any] | None, url: str) -> SsoError:
    error = str(answer.get("error", "")) if answer else ""
    description = _one_line(str(answer.get("error_description") or "")) if answer else ""
    detail = f"{error}{f' ({description})' if description else ''}"
    if error == "invalid_client" or status == 401:
        # Belfry's own credentials: no login can work until the config is fixed.
        return ProviderUnavailable(
            f"the identity provider refused Belfry's client credentials ({detail or status}): "
            "check oidc: client_id and the client secret"
        )
    if status == 400 and error:
        return LoginInvalid(f"the identity provider refused the login code: {detail}")
    return ProviderUnavailable(f"the identity provider's token endpoint {url} answered {status}")


def _jose_reason(error: JoseError) -> str:
    # Some errors carry only their code (bad_signature): as words, then.
    return _one_line(error.description or error.error.replace("_", " ") or type(error).__name__)


def _reason(error: Exception) -> str:
    return _one_line(str(error)) or type(error).__name__


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())[:300]
