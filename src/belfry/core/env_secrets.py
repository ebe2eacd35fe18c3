"""Secret values in a job's ``env``: how they are written, stored and shown.

An env value is a string, or a secret in one of three forms:

- ``{secret: "plain value"}``: given by a user (YAML, API); the server seals it before
  storing it, and never stores, returns or logs the plain value.
- ``{keep: true}``: "the value stored already": what every answer shows for a stored
  secret, so that an exported job applies back unchanged.
- ``{encrypted: TOKEN, digest: HMAC}``: how the server stores a secret (encrypted with its
  secret key; the digest tells a re-applied value from a new one). Never shown, and not
  accepted from users.

The sealing itself (a crypto library) lives in ``belfry.services.secret_box``: the core
only knows the shapes. Values are left out of reprs and of validation messages, so that a
spec or an error that ends up in a log or a CI job's output carries none of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

__all__ = [
    "KEEP",
    "EnvValue",
    "KeepSecret",
    "SealedSecret",
    "SecretInput",
    "is_secret",
    "redacted_env",
    "secret_input_problems",
]

# How a stored secret is shown everywhere: "the value stored already".
KEEP: dict[str, Any] = {"keep": True}
_FORMS = "a string, {secret: VALUE} or {keep: true}"


class _Form(BaseModel):
    # No whitespace stripping: a secret is used exactly as given.
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretInput(_Form):
    """A new secret value, as a user gives it (sealed by the server before it is stored)."""

    secret: str = Field(repr=False)


class KeepSecret(_Form):
    """Keep the secret stored for this variable (what export and the API show)."""

    keep: Literal[True]


class SealedSecret(_Form):
    """A secret as stored: a Fernet token and an HMAC-SHA256 digest of the plain value,
    both keyed by the server's secret key."""

    encrypted: str = Field(repr=False)
    digest: str = Field(repr=False)


def _env_value(value: Any) -> Any:
    """A mapping becomes its secret form; errors never quote a secret."""
    if isinstance(value, _Form | str):
        return value
    if not isinstance(value, Mapping):
        # As for any string field: "expected a string, got a number (8080); quote it ..."
        raise PydanticCustomError("string_type", "Input should be a valid string")
    keys = set(value)
    if keys == {"secret"}:
        secret = value["secret"]
        if not isinstance(secret, str):
            raise ValueError("a secret must be a string (quote it in YAML); its value is not shown")
        if not _is_unicode_text(secret):
            raise ValueError("a secret must be Unicode text (it holds a lone surrogate)")
        return SecretInput(secret=secret)
    if keys == {"keep"}:
        if value["keep"] is not True:
            raise ValueError("'keep' must be true (keep the value stored already)")
        return KeepSecret(keep=True)
    if keys == {"encrypted", "digest"} and all(isinstance(value[k], str) for k in keys):
        return SealedSecret(encrypted=value["encrypted"], digest=value["digest"])
    named = ", ".join(repr(str(key)) for key in sorted(keys, key=str)) or "none"
    raise ValueError(f"expected {_FORMS}; got a mapping with the keys {named}")


def _is_unicode_text(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8 (JSON may carry lone surrogates, which do not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


EnvValue = Annotated[str | SecretInput | KeepSecret | SealedSecret, BeforeValidator(_env_value)]


def is_secret(value: EnvValue) -> bool:
    return not isinstance(value, str)


def redacted_env(env: Mapping[str, EnvValue]) -> dict[str, Any]:
    """``env`` as it may be shown: strings as they are, every secret as ``{keep: true}``."""
    return {name: dict(KEEP) if is_secret(value) else value for name, value in env.items()}


def secret_input_problems(env: Mapping[str, EnvValue]) -> list[tuple[str, str]]:
    """(variable, message) for the values a user may not give: a secret's stored form."""
    return [
        (
            name,
            "{encrypted, digest} is how the server stores a secret; give the value as "
            "{secret: VALUE}, or {keep: true} to keep the stored one",
        )
        for name, value in env.items()
        if isinstance(value, SealedSecret)
    ]
