"""Apprise channels: Slack, Teams, PagerDuty, Telegram and ~100 more services by URL.

Apprise URLs carry the service's tokens, so nothing here ever puts one in a message: a
failure names the scheme (and apprise's service name) only. Apprise's own log records go
through a filter that masks every URL in them (see ``_MaskUrls``).

Apprise is synchronous (requests underneath) and loads its plugins on first use, so the
whole exchange runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any
from urllib.parse import urlsplit

from belfry.core.alerts import Alert, AlertKind
from belfry.ports.notifications import DeliveryFailed

__all__ = ["APPRISE_TIMEOUT", "send_apprise"]

# Bounds the whole notify() call (apprise's own per-service default is 60s): the worker
# thread cannot be cancelled, so it must end by itself.
APPRISE_TIMEOUT = 30.0

# Apprise's own logger (apprise.LOGGER_NAME), named here so that the filter is in place
# without importing apprise: importing it costs ~0.2 s, which every CLI call and server
# start would pay; it is imported on the first alert instead.
_APPRISE_LOGGER = "apprise"
# Colours and icons in chat services (apprise.NotifyType values): failures red,
# warnings amber, recoveries green.
_NOTIFY_TYPES = {
    AlertKind.FAILURE: "failure",
    AlertKind.RECOVERY: "success",
    AlertKind.MISSED: "warning",
    AlertKind.LATE: "warning",
    AlertKind.TOO_LONG: "warning",
    AlertKind.TOO_SHORT: "warning",
    AlertKind.TEST: "info",
}
_ANY_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*)://\S+")


class _MaskUrls(logging.Filter):
    """Masks URLs in apprise's log records. Apprise already shortens secrets it recognises
    ("slack://T...2/A...D"), but it logs the URL of a failing or unparseable service at
    WARNING/ERROR and keeps first and last characters; ours must show none of a token."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _ANY_URL.sub(r"\1://***", message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def _install_log_filter() -> None:
    # Apprise logs everything through the one "apprise" logger; a logger's filters see its
    # records before any handler (ours, or apprise's per-call capture) does.
    apprise_logger = logging.getLogger(_APPRISE_LOGGER)
    if not any(isinstance(f, _MaskUrls) for f in apprise_logger.filters):
        apprise_logger.addFilter(_MaskUrls())


_install_log_filter()


def _scheme(url: str) -> str:
    return urlsplit(url).scheme.lower() or "(none)"


def _apprise() -> Any:
    import apprise

    return apprise


def _unusable(scheme: str) -> DeliveryFailed:
    apprise = _apprise()
    # Apprise's registry of plugins (a singleton, loaded by now); it has no type hints.
    plugins = apprise.NotificationManager()
    if scheme not in plugins:
        why = "is unknown"
    elif not plugins[scheme].enabled:
        why = "is disabled on this server (a library it needs is missing)"
    else:
        why = "is known, but a part of the URL is missing or invalid"
    return DeliveryFailed(f"not a usable apprise URL (scheme '{scheme}' {why})", permanent=True)


def _notify(url: str, alert: Alert) -> None:
    """The blocking part, run in a worker thread."""
    scheme = _scheme(url)
    apprise = _apprise()
    notifier = apprise.Apprise(asset=apprise.AppriseAsset(secure_logging=True))
    if not notifier.add(url):
        raise _unusable(scheme)
    result = notifier.notify(
        body=alert.text(),
        title=alert.title,
        notify_type=apprise.NotifyType(_NOTIFY_TYPES.get(alert.kind, "info")),
        # The text is plain: services taking Markdown or HTML get it escaped, not read.
        body_format=apprise.NotifyFormat("text"),
        timeout=APPRISE_TIMEOUT,
    )
    if result:
        return
    # The service's name ("Slack") and the outcome are safe; apprise's log lines are not
    # (they may quote hosts, paths or a response that echoes a token).
    services = sorted({service.name for service in result.results})
    service = f" ({', '.join(services)})" if services else ""
    outcome = result.status.name.lower()
    raise DeliveryFailed(f"apprise {scheme}://{service} did not take the alert ({outcome})")


async def send_apprise(url: str, alert: Alert) -> None:
    """Send ``alert`` through the apprise ``url``; raise DeliveryFailed if it fails."""
    await asyncio.to_thread(_notify, url, alert)
