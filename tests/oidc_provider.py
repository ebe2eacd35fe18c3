"""A small but real OpenID Connect provider for the tests, served on loopback.

Discovery, an authorization endpoint that logs the configured user in without a form and
sends the browser back with a code, a token endpoint that checks the code, the client's
credentials, the redirect URI and PKCE (S256) and answers an RS256-signed ID token, and
the key set to check it with. A real HTTP server (uvicorn, in a thread), so Belfry's
server process talks to it over TCP as it would to Keycloak or Okta.

The checks here are written out by hand (the PKCE hash, the at_hash) rather than taken
from Authlib, which Belfry's side uses: a mistake shared by both sides would pass.
Signing uses joserfc, Authlib's JOSE library (``authlib.jose`` is deprecated in its
favour since Authlib 1.7).

Knobs the tests turn: ``user`` (who logs in next, and their groups), ``tamper`` (make the
next ID token wrong in one way), ``deny`` (refuse the next login).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

import uvicorn
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

__all__ = ["OidcProvider", "ProviderUser"]

Tamper = Literal["signature", "nonce", "audience", "issuer", "expired"]


@dataclass(frozen=True)
class ProviderUser:
    sub: str
    preferred_username: str | None = None
    email: str | None = None
    email_verified: bool | None = True
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Grant:
    """What an authorization code stands for (the user as they were at login)."""

    client_id: str
    redirect_uri: str
    nonce: str | None
    code_challenge: str
    user: ProviderUser


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class OidcProvider:
    client_id: str
    client_secret: str
    redirect_uri: str
    user: ProviderUser = field(default_factory=lambda: ProviderUser(sub="nobody"))
    tamper: Tamper | None = None
    deny: bool = False
    port: int = field(default_factory=_free_port)
    # What Belfry asked for, for the tests to look at.
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    _codes: dict[str, _Grant] = field(default_factory=dict)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "key-1", "use": "sig"})
        # Same key id, another key: what a forged token would be signed with.
        self.forger = RSAKey.generate_key(2048, parameters={"kid": "key-1", "use": "sig"})

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- running ----------------------------------------------------------------------------
    def start(self) -> OidcProvider:
        """Serve (again, after ``stop``, on the same port)."""
        config = uvicorn.Config(
            self._app(),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="oidc-provider", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the test OIDC provider did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the endpoints ----------------------------------------------------------------------
    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery),
                Route("/authorize", self._authorize),
                Route("/token", self._token, methods=["POST"]),
                Route("/jwks", self._jwks),
            ]
        )

    async def _discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
                "scopes_supported": ["openid", "profile", "email", "groups"],
            }
        )

    async def _jwks(self, request: Request) -> Response:
        return JSONResponse(KeySet([self.key]).as_dict(private=False))

    async def _authorize(self, request: Request) -> Response:
        query = dict(request.query_params)
        self.authorize_requests.append(query)
        # Errors about the client or the redirect URI must not redirect (RFC 6749 4.1.2.1).
        if query.get("client_id") != self.client_id:
            return PlainTextResponse("unknown client_id", 400)
        if query.get("redirect_uri") != self.redirect_uri:
            return PlainTextResponse("redirect_uri is not registered for this client", 400)
        state = query.get("state", "")
        problem = None
        if query.get("response_type") != "code":
            problem = "unsupported_response_type"
        elif "openid" not in query.get("scope", "").split():
            problem = "invalid_scope"
        elif query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            problem = "invalid_request"
        elif self.deny:
            problem = "access_denied"
        if problem is not None:
            return self._back({"error": problem, "state": state})
        code = secrets.token_urlsafe(24)
        self._codes[code] = _Grant(
            client_id=self.client_id,
            redirect_uri=self.redirect_uri,
            nonce=query.get("nonce"),
            code_challenge=query["code_challenge"],
            user=self.user,
        )
        return self._back({"code": code, "state": state})

    def _back(self, params: dict[str, str]) -> Response:
        return RedirectResponse(f"{self.redirect_uri}?{urlencode(params)}", 302)

    async def _token(self, request: Request) -> Response:
        # Parsed by hand: Starlette's form parsing needs python-multipart, for this alone.
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        self.token_requests.append(form)
        client_id, secret = self._client_credentials(request, form)
        if client_id != self.client_id or secret != self.client_secret:
            return JSONResponse({"error": "invalid_client"}, 401)
        if form.get("grant_type") != "authorization_code":
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        grant = self._codes.pop(form.get("code", ""), None)  # a code is good once
        if grant is None:
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "unknown code"}, 400
            )
        if form.get("redirect_uri") != grant.redirect_uri:
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "redirect_uri differs"}, 400
            )
        verifier = form.get("code_verifier", "")
        if _b64url(hashlib.sha256(verifier.encode("ascii")).digest()) != grant.code_challenge:
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "PKCE verifier mismatch"}, 400
            )
        access_token = secrets.token_urlsafe(32)
        return JSONResponse(
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": self._id_token(grant, access_token),
            },
            headers={"Cache-Control": "no-store"},
        )

    def _client_credentials(
        self, request: Request, form: dict[str, str]
    ) -> tuple[str | None, str | None]:
        header = request.headers.get("authorization", "")
        if header.startswith("Basic "):
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            return client_id, secret
        return form.get("client_id"), form.get("client_secret")

    def _id_token(self, grant: _Grant, access_token: str) -> str:
        now = int(time.time())
        user = grant.user
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user.sub,
            "aud": grant.client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": grant.nonce,
            # OIDC Core 3.1.3.6: the left half of SHA-256 of the access token.
            "at_hash": _b64url(hashlib.sha256(access_token.encode()).digest()[:16]),
            "groups": list(user.groups),
        }
        for name in ("preferred_username", "email", "email_verified"):
            value = getattr(user, name)
            if value is not None:
                claims[name] = value
        key = self.key
        match self.tamper:
            case "signature":
                key = self.forger
            case "nonce":
                claims["nonce"] = "not-the-nonce-belfry-sent"
            case "audience":
                claims["aud"] = "another-client"
            case "issuer":
                claims["iss"] = "https://impostor.example"
            case "expired":
                claims["iat"], claims["exp"] = now - 3600, now - 1800
        return jwt.encode({"alg": "RS256", "kid": "key-1", "typ": "JWT"}, claims, key)

    def with_user(self, **changes: Any) -> None:
        """Change who logs in next (``groups=(...)`` etc.)."""
        self.user = replace(self.user, **changes)
