"""E-mail channels: the alert as a plain-text mail through the server's SMTP settings.

aiosmtplib keeps the event loop free; the one SMTP conversation per alert is short, so
no connection is kept open between alerts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

import aiosmtplib

from belfry.core.alerts import Alert
from belfry.core.channels import EmailTarget
from belfry.ports.notifications import DeliveryFailed

__all__ = ["NO_SMTP", "SmtpSettings", "build_message", "send_email"]

NO_SMTP = "e-mail channels need the server's smtp settings (smtp: in the server config)"
_MAX_DETAIL = 200


@dataclass(frozen=True)
class SmtpSettings:
    """How the server sends mail (``smtp:`` in the server config)."""

    host: str = "localhost"
    port: int = 25
    username: str | None = None
    # Kept out of repr so a logged settings object never shows it.
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    use_tls: bool = False  # implicit TLS from the first byte (usually port 465)
    sender: str = "belfry@localhost"
    timeout: float = 10.0


def _one_line(text: str, limit: int | None = _MAX_DETAIL) -> str:
    return " ".join(text.split())[:limit]


def _address(sender: str) -> str:
    """The bare address of ``sender``, which may be ``Belfry <belfry@example.org>``: the
    SMTP envelope takes the address alone."""
    return parseaddr(sender)[1] or sender


def build_message(sender: str, target: EmailTarget, alert: Alert) -> EmailMessage:
    """The mail for ``alert``: subject ``PREFIX TITLE`` on one line, body ``alert.text()``."""
    message = EmailMessage()
    # Header values must be one line (the policy refuses CR/LF): titles can hold anything.
    message["Subject"] = _one_line(f"{target.subject_prefix} {alert.title}", limit=None)
    message["From"] = sender
    message["To"] = ", ".join(target.to)
    message["Date"] = format_datetime(datetime.now(UTC))
    # make_msgid() without a domain resolves the local FQDN, a blocking DNS lookup.
    domain = _address(sender).rpartition("@")[2] or "belfry.invalid"
    message["Message-ID"] = make_msgid(domain=domain)
    message["X-Belfry-Event"] = alert.kind.value
    message.set_content(alert.text())
    return message


def _response_failure(where: str, what: str, code: int, text: str) -> DeliveryFailed:
    # SMTP's own rule: 4xx is transient (greylisting, mailbox busy), 5xx is final.
    return DeliveryFailed(f"{where} {what} ({code} {_one_line(text)})", permanent=code >= 500)


def _refused(where: str, refused: Mapping[str, tuple[int, str]], total: int) -> DeliveryFailed:
    listed = "; ".join(
        f"{address} ({code} {_one_line(text)})" for address, (code, text) in refused.items()
    )
    if len(refused) < total:
        # The others got the alert already: a retry would send it to them twice.
        return DeliveryFailed(
            f"{where} refused {listed}; the other recipients got the alert", permanent=True
        )
    transient = all(400 <= code < 500 for code, _ in refused.values())
    return DeliveryFailed(f"{where} refused {listed}", permanent=not transient)


async def send_email(settings: SmtpSettings | None, target: EmailTarget, alert: Alert) -> None:
    """Mail ``alert`` to ``target.to``; raise DeliveryFailed unless the server took it."""
    if settings is None:
        raise DeliveryFailed(NO_SMTP, permanent=True)
    message = build_message(settings.sender, target, alert)
    where = f"SMTP server {settings.host}:{settings.port}"
    try:
        errors, _ = await aiosmtplib.send(
            message,
            sender=_address(settings.sender),
            recipients=target.to,
            hostname=settings.host,
            port=settings.port,
            username=settings.username,
            password=settings.password,
            start_tls=settings.starttls,
            use_tls=settings.use_tls,
            timeout=settings.timeout,
        )
    except aiosmtplib.SMTPRecipientsRefused as error:
        refused = {r.recipient: (r.code, r.message) for r in error.recipients}
        raise _refused(where, refused, len(target.to)) from error
    except aiosmtplib.SMTPAuthenticationError as error:
        # The server's answer only: it never contains the password we sent.
        login = f"rejected the login as {settings.username}"
        raise _response_failure(where, login, error.code, error.message) from error
    except aiosmtplib.SMTPSenderRefused as error:
        what = f"refused the sender {error.sender}"
        raise _response_failure(where, what, error.code, error.message) from error
    except aiosmtplib.SMTPTimeoutError as error:
        raise DeliveryFailed(f"{where} did not answer within {settings.timeout:g}s") from error
    except aiosmtplib.SMTPResponseException as error:
        # Includes an unwelcoming greeting (SMTPConnectResponseError), HELO and DATA errors.
        raise _response_failure(where, "answered", error.code, error.message) from error
    except aiosmtplib.SMTPNotSupported as error:
        # E.g. STARTTLS or AUTH required by the settings but not offered: a config problem.
        raise DeliveryFailed(f"{where}: {_one_line(error.message)}", permanent=True) from error
    except (aiosmtplib.SMTPException, OSError) as error:
        # Connection refused or reset, DNS failure, TLS handshake: the network's moods.
        detail = _one_line(str(error)) or type(error).__name__
        raise DeliveryFailed(f"{where} could not be reached: {detail}") from error
    except ValueError as error:
        # aiosmtplib's check of the settings (e.g. both starttls and use_tls).
        raise DeliveryFailed(f"{where}: {_one_line(str(error))}", permanent=True) from error
    if errors:
        refused = {address: (answer.code, answer.message) for address, answer in errors.items()}
        raise _refused(where, refused, len(target.to))
