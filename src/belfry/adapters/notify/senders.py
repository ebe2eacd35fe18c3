"""The ChannelSender port: one alert to one channel, whatever the channel's kind."""

from __future__ import annotations

from types import TracebackType

import httpx

from belfry.adapters.notify.apprise_channel import send_apprise
from belfry.adapters.notify.email import SmtpSettings, send_email
from belfry.adapters.notify.webhook import USER_AGENT, send_webhook
from belfry.core.alerts import Alert
from belfry.core.channels import ChannelSpec

__all__ = ["ChannelSenders"]


class ChannelSenders:
    """Delivers through apprise, webhooks or SMTP. Owns an HTTP client unless given one
    (then closing it stays the giver's job): ``async with ChannelSenders(...)`` or
    ``aclose()``."""

    def __init__(
        self, smtp: SmtpSettings | None = None, client: httpx.AsyncClient | None = None
    ) -> None:
        self._smtp = smtp
        self._owns_client = client is None
        # Redirects are refused per request anyway (webhook.py); proxies from the
        # environment are honoured, as operators behind one expect.
        self._client = client or httpx.AsyncClient(headers={"User-Agent": USER_AGENT})

    async def send(self, channel: ChannelSpec, alert: Alert, delivery_id: int) -> None:
        # ChannelSpec guarantees exactly one target; test them in order to narrow types.
        if channel.apprise is not None:
            await send_apprise(channel.apprise, alert)
        elif channel.webhook is not None:
            await send_webhook(channel.webhook, alert, delivery_id, self._client)
        elif channel.email is not None:
            await send_email(self._smtp, channel.email, alert)
        else:  # pragma: no cover - ChannelSpec's validator forbids it
            raise AssertionError(f"channel {channel.name} has no target")

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> ChannelSenders:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
