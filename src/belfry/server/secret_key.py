"""The server's secret key: seals the jobs' secret env values (``services.secret_box``).

A file holding a Fernet key (32 random bytes, urlsafe base64). By default ``secret.key``
in the server's state directory, beside ``admin-token``, created with mode 0600 at the
first start. Servers sharing a database must all be given the same key file
(``--secret-key-file`` / ``secret_key_file:``): a secret sealed by one is opened by
whichever server hands its run to a worker. A file given explicitly is never created, so
that a typo cannot give one server a key of its own.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from belfry.server.settings import Settings
from belfry.services.secret_box import SecretBox

__all__ = ["SecretKeyError", "load_secret_box", "server_secret_box"]

log = logging.getLogger(__name__)


class SecretKeyError(RuntimeError):
    """The key file cannot be read, created or used (the message says which and how)."""


def server_secret_box(settings: Settings) -> SecretBox:
    """The box for ``settings.secret_key_file``, else for ``secret.key`` in the state
    directory (created if missing)."""
    if settings.secret_key_file is not None:
        return load_secret_box(settings.secret_key_file, create=False)
    return load_secret_box(settings.state_dir / "secret.key", create=True)


def load_secret_box(path: Path, *, create: bool) -> SecretBox:
    """The box for the key in ``path``; with ``create``, a new key is written there first
    if the file does not exist."""
    if create and not path.exists():
        _create(path)
    try:
        text = path.read_text().strip()
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SecretKeyError(
            f"secret key file {path} does not exist (give every server the same file; "
            "create one with: python3 -c 'import base64, os; "
            "print(base64.urlsafe_b64encode(os.urandom(32)).decode())' > FILE)"
        ) from None
    except OSError as error:
        raise SecretKeyError(f"cannot read the secret key file {path}: {error.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("secret key file %s can be read by other users: chmod 600 it", path)
    try:
        return SecretBox(text)
    except ValueError:
        raise SecretKeyError(
            f"secret key file {path}: not a key (expected 32 random bytes, urlsafe base64, "
            "as the server writes at its first start)"
        ) from None


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Exclusive: never replaces a key another process has just written.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as error:
        raise SecretKeyError(
            f"cannot create the secret key file {path}: {error.strerror}"
        ) from None
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(SecretBox.generate_key() + b"\n")
