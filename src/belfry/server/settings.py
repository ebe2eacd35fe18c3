"""Server settings, built once at the entry point and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from belfry.adapters.notify import SmtpSettings
from belfry.server.defaults import (
    DEFAULT_LISTEN,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_PORT,
    MIN_MAX_REQUEST_BYTES,
    default_state_dir,
)
from belfry.services.notifier import NotifierSettings
from belfry.services.retention import RetentionDefaults
from belfry.services.sso import OidcSettings
from belfry.worker.log_format import LogFormat

__all__ = [
    "DEFAULT_LISTEN",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_PORT",
    "MIN_MAX_REQUEST_BYTES",
    "Settings",
    "default_state_dir",
]


@dataclass(frozen=True)
class Settings:
    state_dir: Path = field(default_factory=default_state_dir)
    db_url: str | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    embedded_worker: bool = True
    worker_slots: int | None = None
    # The pools the embedded worker serves (jobs of other pools wait for remote workers).
    worker_pools: tuple[str, ...] = ("default",)
    retention: RetentionDefaults = field(default_factory=RetentionDefaults)
    prune_interval: float = 60.0
    log_level: str = "info"
    # Log lines as text for people, or one JSON object per line for log shippers.
    log_format: LogFormat = LogFormat.TEXT
    # Serve /metrics without a token (a scraper on a trusted network). Off: /metrics needs
    # a token that may read every group, as its per-job series name every job.
    metrics_public: bool = False
    # Serve HTTPS with this certificate chain and private key (PEM); both or neither.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Reverse proxies (addresses or networks) whose X-Forwarded-Proto and X-Forwarded-For
    # are believed: behind one that ends TLS, a login's cookie is then Secure and the audit
    # log has the client's address. Empty: nobody's headers count (anyone could send them).
    forwarded_allow_ips: tuple[str, ...] = ()
    # Request bodies larger than this are refused with 413 before they are read whole.
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    # The key that seals jobs' secret env values (None: secret.key in state_dir, created at
    # the first start). Servers sharing a database must all be given the same file.
    secret_key_file: Path | None = None
    # Single sign-on through an OpenID Connect provider (the ``oidc:`` config section).
    oidc: OidcSettings | None = None
    # Where e-mail alerts go out (the ``smtp:`` config section; None: e-mail channels fail).
    smtp: SmtpSettings | None = None
    # How often alerts are decided and sent; when a stalled scheduler is alerted.
    notifier: NotifierSettings = field(default_factory=NotifierSettings)

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.state_dir / 'belfry.db'}"

    @property
    def secret_key_path(self) -> Path:
        """The secret key file in use: the one given, else ``secret.key`` in the state
        directory (as ``server.secret_key`` reads it)."""
        return self.secret_key_file or self.state_dir / "secret.key"

    @property
    def oidc_redirect_uri(self) -> str:
        """Where the identity provider sends browsers back (register it there)."""
        if self.oidc is not None and self.oidc.redirect_uri is not None:
            return self.oidc.redirect_uri
        return f"{self.public_url}/api/v1/oidc/callback"

    @property
    def admin_token_file(self) -> Path:
        return self.state_dir / "admin-token"

    @property
    def public_url(self) -> str:
        host = "127.0.0.1" if self.host in {"0.0.0.0", "::", ""} else self.host
        if ":" in host:  # an IPv6 literal
            host = f"[{host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"
