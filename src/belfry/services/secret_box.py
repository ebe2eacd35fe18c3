"""Job secrets at rest: sealed with the server's secret key, opened only to run a job.

A sealed secret is a Fernet token (AES-128-CBC and HMAC-SHA256, randomized: the same
value seals differently each time) and an HMAC-SHA256 digest of the plain value under a
key derived from the same secret key, so that ``apply`` can tell a re-applied value
(unchanged) from a new one without decrypting anything or storing the value in the clear.
Every server sharing a database must have the same key.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from belfry.core.env_secrets import SealedSecret

__all__ = ["SecretBox", "SecretUnreadable"]

# Separates the digest key from the encryption key (HKDF's "info").
_DIGEST_KEY_PURPOSE = b"belfry job secret digests v1"


class SecretUnreadable(ValueError):
    """A sealed secret does not open with this key (sealed under another, or damaged)."""


class SecretBox:
    def __init__(self, key: bytes | str) -> None:
        """``key``: a Fernet key (32 random bytes, urlsafe base64). Raises ValueError if
        it is not one."""
        self._fernet = Fernet(key)
        raw = key.encode() if isinstance(key, str) else key
        self._digest_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=_DIGEST_KEY_PURPOSE
        ).derive(raw)

    @staticmethod
    def generate_key() -> bytes:
        return Fernet.generate_key()

    def seal(self, plain: str) -> SealedSecret:
        return SealedSecret(
            encrypted=self._fernet.encrypt(plain.encode()).decode("ascii"),
            digest=self._digest(plain),
        )

    def matches(self, sealed: SealedSecret, plain: str) -> bool:
        """Whether ``sealed`` holds ``plain`` (by digest: sealed under this key only)."""
        return hmac.compare_digest(sealed.digest, self._digest(plain))

    def open(self, sealed: SealedSecret) -> str:
        try:
            return self._fernet.decrypt(sealed.encrypted.encode("ascii")).decode()
        except (InvalidToken, UnicodeError) as error:
            raise SecretUnreadable(
                "cannot be decrypted with this server's secret key (sealed with another "
                "key? every server must have the same secret key file; apply the value "
                "again to seal it with this one)"
            ) from error

    def _digest(self, plain: str) -> str:
        return hmac.new(self._digest_key, plain.encode(), hashlib.sha256).hexdigest()
