"""Webhook channels: the alert as a JSON POST, signed with HMAC-SHA256 under the secret.

The body is ``Alert.to_document()`` as compact JSON with sorted keys, so the bytes are
stable and a receiver can verify the signature over exactly what it received:
``X-Belfry-Signature: sha256=HEX`` with HEX the HMAC-SHA256 of ``TIMESTAMP.`` + body under
the channel's secret, ``TIMESTAMP`` being ``X-Belfry-Timestamp`` (Unix seconds).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from urllib.parse import urlsplit

import httpx

from belfry import __version__
from belfry.core.alerts import Alert
from belfry.core.channels import WebhookTarget
from belfry.ports.notifications import DeliveryFailed

__all__ = ["USER_AGENT", "public_url", "send_webhook", "webhook_signature"]

USER_AGENT = f"belfry/{__version__}"
# The receiver asked us to come back later (408, 429) or broke (5xx): worth a retry.
_RETRYABLE_STATUSES = frozenset({408, 429})
_ANY_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*)://\S+")
_MAX_DETAIL = 200


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=HEX``: the HMAC-SHA256 of ``f"{timestamp}."`` + ``body`` under ``secret``,
    what ``X-Belfry-Signature`` carries (receivers compare it in constant time)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def public_url(url: str) -> str:
    """``url`` fit for messages and logs: no userinfo, query or fragment (they hold
    tokens), only scheme, host, port and path."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def _body(alert: Alert) -> bytes:
    return json.dumps(alert.to_document(), separators=(",", ":"), sort_keys=True).encode()


def _headers(target: WebhookTarget, alert: Alert, delivery_id: int, body: bytes) -> httpx.Headers:
    # The target's headers may replace the User-Agent but never the protocol's own headers,
    # so a typo in a job file cannot break signatures or de-duplication.
    headers = httpx.Headers({"User-Agent": USER_AGENT})
    headers.update(target.headers)
    headers["Content-Type"] = "application/json"
    headers["X-Belfry-Delivery"] = str(delivery_id)
    headers["X-Belfry-Event"] = alert.kind.value
    if target.secret is not None:
        timestamp = int(time.time())
        headers["X-Belfry-Timestamp"] = str(timestamp)
        headers["X-Belfry-Signature"] = webhook_signature(target.secret, timestamp, body)
    return headers


def _detail(error: Exception, target: WebhookTarget) -> str:
    """The error in one short line without anything secret: library messages may quote
    the URL (with its query) and, in theory, a header value."""
    text = " ".join(str(error).split()) or type(error).__name__
    text = _ANY_URL.sub(r"\1://***", text)
    parts = urlsplit(target.url)
    userinfo = parts.netloc.rpartition("@")[0]
    secrets = [target.secret, parts.query, parts.fragment, userinfo, parts.password]
    for secret in [*secrets, *target.headers.values()]:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text[:_MAX_DETAIL]


async def send_webhook(
    target: WebhookTarget, alert: Alert, delivery_id: int, client: httpx.AsyncClient
) -> None:
    """POST ``alert`` to ``target``; raise DeliveryFailed unless it answers 2xx."""
    body = _body(alert)
    where = public_url(target.url)
    try:
        headers = _headers(target, alert, delivery_id, body)
    except UnicodeEncodeError as error:
        # HTTP header values are ASCII; the value itself may be a token, so name none.
        raise DeliveryFailed(
            f"webhook {where} cannot be called: a header value is not ASCII", permanent=True
        ) from error
    seconds = target.timeout.total_seconds()
    try:
        # httpx's timeout bounds each phase; asyncio's bounds the whole exchange, so a
        # receiver dripping bytes cannot hold a delivery forever.
        async with (
            asyncio.timeout(seconds),
            # Streamed and never read: the answer's body does not matter and may be large.
            # Redirects are not followed: they would carry the target's headers elsewhere.
            client.stream(
                "POST",
                target.url,
                content=body,
                headers=headers,
                timeout=seconds,
                follow_redirects=False,
            ) as response,
        ):
            status, reason = response.status_code, response.reason_phrase
    except (TimeoutError, httpx.TimeoutException) as error:
        raise DeliveryFailed(f"webhook {where} did not answer within {seconds:g}s") from error
    except (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL) as error:
        # Our request cannot be sent as configured (bad URL or header): retrying cannot help.
        raise DeliveryFailed(
            f"webhook {where} cannot be called: {_detail(error, target)}", permanent=True
        ) from error
    except httpx.ConnectError as error:
        raise DeliveryFailed(
            f"webhook {where} could not be reached: {_detail(error, target)}"
        ) from error
    except httpx.TransportError as error:
        raise DeliveryFailed(
            f"webhook {where} failed: {type(error).__name__}: {_detail(error, target)}"
        ) from error
    if 200 <= status < 300:
        return
    answer = f"webhook {where} answered HTTP {status}{f' {reason}' if reason else ''}"
    if status in _RETRYABLE_STATUSES or status >= 500:
        raise DeliveryFailed(answer)
    if 300 <= status < 400:
        raise DeliveryFailed(f"{answer} (redirects are not followed)", permanent=True)
    raise DeliveryFailed(answer, permanent=True)
