"""Notification channels: where alerts go (``channels:`` in job files, ``/api/v1/channels``).

A channel has a name and exactly one target: an apprise URL (Slack, Teams, PagerDuty,
Telegram, e-mail and ~100 more services), a webhook (a JSON body signed with HMAC-SHA256
under the channel's secret), or e-mail sent through the server's SMTP settings. The target
holds credentials (tokens in URLs, the webhook secret), so it is stored sealed and shown
redacted (``ChannelSpec.redacted``).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from belfry.core.durations import Duration
from belfry.core.names import NAME_RULE, is_valid_name

__all__ = [
    "REDACTED",
    "ChannelSpec",
    "EmailTarget",
    "WebhookTarget",
]

REDACTED = "***"
# A deliberately loose address check: the SMTP server is the judge, this catches typos
# such as a missing "@" or a stray space at apply time rather than at the first alert.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_APPRISE_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://\S*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class WebhookTarget(_Strict):
    """POST of the alert as JSON. With a ``secret``, headers ``X-Belfry-Timestamp`` (Unix
    seconds) and ``X-Belfry-Signature: sha256=HEX`` where HEX is the HMAC-SHA256 of
    ``TIMESTAMP.BODY`` under the secret: receivers check both, and refuse old timestamps
    to defeat replays."""

    url: str = Field(pattern=r"^https?://\S+$")
    secret: str | None = Field(default=None, min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = timedelta(seconds=10)


class EmailTarget(_Strict):
    """Mail through the server's SMTP settings (``smtp:`` in the server config)."""

    to: list[str] = Field(min_length=1)
    subject_prefix: str = "[belfry]"

    @field_validator("to")
    @classmethod
    def _valid_addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if not _EMAIL.match(address):
                raise ValueError(f"{address!r} is not an e-mail address")
        return value


class ChannelSpec(_Strict):
    name: str
    apprise: str | None = None
    webhook: WebhookTarget | None = None
    email: EmailTarget | None = None
    # At most one alert per job and kind in this interval while a failure streak goes on
    # (a rule's own ``realert`` wins); None: only the first of the streak.
    realert: Duration | None = timedelta(hours=1)
    description: str = ""

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not is_valid_name(value):
            raise ValueError(NAME_RULE)
        return value

    @field_validator("apprise")
    @classmethod
    def _valid_apprise(cls, value: str | None) -> str | None:
        if value is not None and not _APPRISE_URL.match(value):
            raise ValueError("not an apprise URL (expected SCHEMA://..., e.g. slack://...)")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> ChannelSpec:
        given = [kind for kind in ("apprise", "webhook", "email") if getattr(self, kind)]
        if len(given) != 1:
            raise ValueError(
                "apprise: a channel needs exactly one of 'apprise', 'webhook' or 'email'"
                + (f" (has {' and '.join(given)})" if given else "")
            )
        return self

    @property
    def kind(self) -> Literal["apprise", "webhook", "email"]:
        if self.apprise is not None:
            return "apprise"
        return "webhook" if self.webhook is not None else "email"

    def redacted(self) -> dict[str, Any]:
        """The spec as JSON-ready data without its credentials: an apprise URL keeps its
        scheme only, a webhook its URL without query and its secret as ``***``."""
        document = self.model_dump(mode="json", exclude_defaults=True)
        if self.apprise is not None:
            document["apprise"] = f"{urlsplit(self.apprise).scheme}://{REDACTED}"
        if self.webhook is not None:
            parts = urlsplit(self.webhook.url)
            hook = document["webhook"]
            hook["url"] = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
            if self.webhook.secret is not None:
                hook["secret"] = REDACTED
            if self.webhook.headers:
                hook["headers"] = dict.fromkeys(self.webhook.headers, REDACTED)
        return document
