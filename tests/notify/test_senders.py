"""Alert delivery against real receivers on loopback: an HTTP server (webhooks and apprise's
json:// service), an SMTP server (aiosmtpd), closed ports and a server that never answers.
No mocks: what is asserted is what a receiver got."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import hashlib
import hmac
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session
from pytest_httpserver import HTTPServer
from werkzeug import Response

from belfry.adapters.notify import (
    ChannelSenders,
    SmtpSettings,
    public_url,
    send_apprise,
    send_email,
    send_webhook,
    webhook_signature,
)
from belfry.core.alerts import Alert, AlertKind
from belfry.core.channels import ChannelSpec, EmailTarget, WebhookTarget
from belfry.ports.notifications import DeliveryFailed

SECRET = "wh-s3cret-Zq81"
ALERT = Alert(
    kind=AlertKind.FAILURE,
    job="billing/nightly-invoices",
    summary="failed with exit code 3",
    at=datetime(2027, 3, 1, 12, 0, 5, tzinfo=UTC),
    run_id=4711,
    attempt=2,
    scheduled_for=datetime(2027, 3, 1, 12, 0, tzinfo=UTC),
    state="failed",
    exit_code=3,
    output_tail="Traceback ...\nValueError: ünïcode too",
    details={"pool": "billing"},
)


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
async def senders() -> AsyncIterator[ChannelSenders]:
    async with ChannelSenders() as owned:
        yield owned


def webhook_channel(url: str, **target: Any) -> ChannelSpec:
    return ChannelSpec(name="hooks", webhook=WebhookTarget(url=url, **target))


# --- webhooks ---------------------------------------------------------------------------


async def test_webhook_posts_the_signed_alert(
    httpserver: HTTPServer, senders: ChannelSenders
) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    channel = webhook_channel(
        httpserver.url_for("/hook"), secret=SECRET, headers={"Authorization": "Bearer t0k"}
    )
    before = int(time.time())

    await senders.send(channel, ALERT, 42)

    httpserver.check_assertions()
    (request, _), *others = httpserver.log
    assert not others
    body = request.get_data()
    document = json.loads(body)
    assert document["kind"] == "failure"
    assert document["job"] == "billing/nightly-invoices"
    assert document["title"] == "billing/nightly-invoices: failed with exit code 3"
    assert document["run_id"] == 4711
    assert document["attempt"] == 2
    assert document["state"] == "failed"
    assert document["exit_code"] == 3
    assert document["scheduled_for"] == "2027-03-01T12:00:00Z"
    assert document["output_tail"].endswith("ünïcode too")
    assert document["details"] == {"pool": "billing"}
    # Compact, sorted and UTF-8: the bytes a receiver hashes are reproducible.
    assert body == json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
    headers = request.headers
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Belfry-Delivery"] == "42"
    assert headers["X-Belfry-Event"] == "failure"
    assert headers["User-Agent"].startswith("belfry/")
    assert headers["Authorization"] == "Bearer t0k"
    timestamp = headers["X-Belfry-Timestamp"]
    assert before <= int(timestamp) <= int(time.time())
    # Verified as a receiver would, without the adapter's helper.
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    signature = headers["X-Belfry-Signature"]
    assert hmac.compare_digest(signature, "sha256=" + expected.hexdigest())


async def test_webhook_without_secret_is_unsigned(
    httpserver: HTTPServer, senders: ChannelSenders
) -> None:
    httpserver.expect_request("/plain").respond_with_data("", status=204)
    await senders.send(webhook_channel(httpserver.url_for("/plain")), ALERT, 7)
    request, _ = httpserver.log[0]
    assert request.headers["X-Belfry-Delivery"] == "7"
    assert "X-Belfry-Signature" not in request.headers
    assert "X-Belfry-Timestamp" not in request.headers


async def test_target_headers_cannot_replace_protocol_headers(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook").respond_with_data("ok")
    target = WebhookTarget(
        url=httpserver.url_for("/hook"),
        secret=SECRET,
        headers={"x-belfry-delivery": "1", "X-Belfry-Signature": "forged", "User-Agent": "ua"},
    )
    async with httpx.AsyncClient() as client:
        await send_webhook(target, ALERT, 99, client)
    request, _ = httpserver.log[0]
    assert request.headers["X-Belfry-Delivery"] == "99"
    assert request.headers["X-Belfry-Signature"].startswith("sha256=")
    assert request.headers["User-Agent"] == "ua"


async def test_non_ascii_header_value_is_permanent(senders: ChannelSenders) -> None:
    channel = webhook_channel("http://127.0.0.1:1/hook", headers={"X-Token": "tök-Ww4"})
    with pytest.raises(DeliveryFailed) as failed:
        await senders.send(channel, ALERT, 1)
    assert failed.value.permanent is True
    assert "tök" not in str(failed.value)


def test_webhook_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"kind":"test"}'
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert webhook_signature("k", 1700000000, body) == f"sha256={expected}"


@pytest.mark.parametrize(
    ("status", "permanent"),
    [
        *[(status, False) for status in (500, 502, 503, 408, 429)],
        *[(status, True) for status in (400, 401, 403, 404, 410, 302)],
    ],
)
async def test_webhook_status_decides_retry(
    httpserver: HTTPServer, senders: ChannelSenders, status: int, permanent: bool
) -> None:
    headers = {"Location": "http://127.0.0.1:1/elsewhere"} if status == 302 else None
    httpserver.expect_request("/hook").respond_with_data("no", status=status, headers=headers)
    with pytest.raises(DeliveryFailed) as failed:
        await senders.send(webhook_channel(httpserver.url_for("/hook")), ALERT, 1)
    assert failed.value.permanent is permanent
    message = str(failed.value)
    assert f"HTTP {status}" in message
    assert httpserver.url_for("/hook") in message
    assert "\n" not in message
    assert len(httpserver.log) == 1  # a redirect is not followed


async def test_webhook_failure_never_shows_credentials(
    httpserver: HTTPServer, senders: ChannelSenders
) -> None:
    httpserver.expect_request("/hook").respond_with_data("boom", status=500)
    url = f"http://user:pw-Xy9@127.0.0.1:{httpserver.port}/hook?token=abc-Qq7"
    with pytest.raises(DeliveryFailed) as failed:
        await senders.send(webhook_channel(url, secret=SECRET), ALERT, 1)
    message = str(failed.value)
    assert f"http://127.0.0.1:{httpserver.port}/hook" in message
    for secret in ("user", "pw-Xy9", "token", "abc-Qq7", "?", "@", SECRET):
        assert secret not in message
    # The userinfo still went out, as HTTP basic auth.
    request, _ = httpserver.log[0]
    assert request.authorization is not None
    assert request.authorization.password == "pw-Xy9"


async def test_webhook_connection_refused_is_retryable(senders: ChannelSenders) -> None:
    port = free_port()
    url = f"http://user:pw-Xy9@127.0.0.1:{port}/hook?token=abc-Qq7"
    with pytest.raises(DeliveryFailed) as failed:
        await senders.send(webhook_channel(url, secret=SECRET), ALERT, 1)
    assert failed.value.permanent is False
    message = str(failed.value)
    assert f"http://127.0.0.1:{port}/hook" in message
    assert "could not be reached" in message
    for secret in ("pw-Xy9", "token", "abc-Qq7", SECRET):
        assert secret not in message


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """Accepts connections, reads, never answers."""
    peers: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer)
        await reader.read()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in peers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_webhook_timeout_is_retryable(senders: ChannelSenders) -> None:
    async with silent_server() as port:
        channel = webhook_channel(
            f"http://127.0.0.1:{port}/slow", timeout=timedelta(milliseconds=300)
        )
        started = time.monotonic()
        with pytest.raises(DeliveryFailed) as failed:
            await senders.send(channel, ALERT, 1)
    assert time.monotonic() - started < 5
    assert failed.value.permanent is False
    assert str(failed.value) == f"webhook http://127.0.0.1:{port}/slow did not answer within 0.3s"


def test_public_url_drops_userinfo_query_and_fragment() -> None:
    assert (
        public_url("https://u:p@hooks.example:8443/a/b?x=1#f") == "https://hooks.example:8443/a/b"
    )


async def test_given_client_is_left_open(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook").respond_with_data("ok")
    async with httpx.AsyncClient() as client:
        async with ChannelSenders(client=client) as senders:
            await senders.send(webhook_channel(httpserver.url_for("/hook")), ALERT, 1)
        assert not client.is_closed


# --- e-mail -----------------------------------------------------------------------------


class Inbox:
    """An aiosmtpd handler keeping what it accepted; ``refuse`` maps an address to the
    answer its RCPT gets."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        self.refuse: dict[str, str] = {}

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append((str(envelope.mail_from), list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


def _deny(*_: Any) -> AuthResult:
    return AuthResult(success=False, handled=False)


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, SmtpSettings]]:
    inbox = Inbox()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=_deny,
        auth_require_tls=False,  # loopback only: lets the test try a login without TLS
    )
    controller.start()
    try:
        yield (
            inbox,
            SmtpSettings(
                host="127.0.0.1", port=controller.port, sender="belfry@example.org", timeout=5
            ),
        )
    finally:
        controller.stop()


TO = EmailTarget(to=["ops@example.org", "oncall@example.org"], subject_prefix="[prod]")


async def test_email_delivers_the_alert(smtp_server: tuple[Inbox, SmtpSettings]) -> None:
    inbox, settings = smtp_server
    async with ChannelSenders(smtp=settings) as senders:
        await senders.send(ChannelSpec(name="mail", email=TO), ALERT, 5)
    [(sender, recipients, message)] = inbox.messages
    assert sender == "belfry@example.org"
    assert recipients == ["ops@example.org", "oncall@example.org"]
    assert message["Subject"] == "[prod] billing/nightly-invoices: failed with exit code 3"
    assert message["To"] == "ops@example.org, oncall@example.org"
    assert message["From"] == "belfry@example.org"
    assert message["X-Belfry-Event"] == "failure"
    assert message["Message-ID"].endswith("@example.org>")
    body = message.get_content().replace("\r\n", "\n")  # SMTP's line ends
    assert body.startswith("billing/nightly-invoices: failed with exit code 3\n")
    assert "run: 4711" in body
    assert "state: failed" in body
    assert "ValueError: ünïcode too" in body


async def test_email_subject_is_one_line(smtp_server: tuple[Inbox, SmtpSettings]) -> None:
    inbox, settings = smtp_server
    alert = Alert(
        kind=AlertKind.MISSED,
        job="a/b",
        summary="missed\r\nBcc: victim@example.org",
        at=ALERT.at,
    )
    await send_email(settings, TO, alert)
    [(_, recipients, message)] = inbox.messages
    assert message["Subject"] == "[prod] a/b: missed Bcc: victim@example.org"
    assert message["Bcc"] is None
    assert recipients == TO.to


async def test_email_sender_with_a_display_name(smtp_server: tuple[Inbox, SmtpSettings]) -> None:
    inbox, settings = smtp_server
    named = SmtpSettings(host=settings.host, port=settings.port, sender="Belfry <cron@example.org>")
    await send_email(named, TO, ALERT)
    [(sender, _, message)] = inbox.messages
    assert sender == "cron@example.org"
    assert message["From"] == "Belfry <cron@example.org>"
    assert message["Message-ID"].endswith("@example.org>")


async def test_email_without_smtp_settings_is_permanent(senders: ChannelSenders) -> None:
    with pytest.raises(DeliveryFailed) as failed:
        await senders.send(ChannelSpec(name="mail", email=TO), ALERT, 1)
    assert failed.value.permanent is True
    assert str(failed.value) == (
        "e-mail channels need the server's smtp settings (smtp: in the server config)"
    )


async def test_email_connection_refused_is_retryable() -> None:
    port = free_port()
    settings = SmtpSettings(host="127.0.0.1", port=port, password="smtp-pw-Kk3", timeout=3)
    with pytest.raises(DeliveryFailed) as failed:
        await send_email(settings, TO, ALERT)
    assert failed.value.permanent is False
    assert f"SMTP server 127.0.0.1:{port} could not be reached" in str(failed.value)
    assert "\n" not in str(failed.value)


@pytest.mark.parametrize(
    ("answer", "permanent"),
    [("550 5.1.1 no such mailbox", True), ("451 4.7.1 greylisted, try again", False)],
)
async def test_email_refused_recipients(
    smtp_server: tuple[Inbox, SmtpSettings], answer: str, permanent: bool
) -> None:
    inbox, settings = smtp_server
    inbox.refuse = dict.fromkeys(TO.to, answer)
    with pytest.raises(DeliveryFailed) as failed:
        await send_email(settings, TO, ALERT)
    assert failed.value.permanent is permanent
    assert "ops@example.org" in str(failed.value)
    assert answer.split()[0] in str(failed.value)
    assert not inbox.messages


async def test_email_partly_refused_is_permanent(
    smtp_server: tuple[Inbox, SmtpSettings],
) -> None:
    # A retry would mail those who got it again.
    inbox, settings = smtp_server
    inbox.refuse = {"oncall@example.org": "450 mailbox busy"}
    with pytest.raises(DeliveryFailed) as failed:
        await send_email(settings, TO, ALERT)
    assert failed.value.permanent is True
    assert "oncall@example.org (450 mailbox busy)" in str(failed.value)
    [(_, recipients, _)] = inbox.messages
    assert recipients == ["ops@example.org"]


async def test_email_login_refused_is_permanent_and_hides_the_password(
    smtp_server: tuple[Inbox, SmtpSettings],
) -> None:
    inbox, settings = smtp_server
    settings = SmtpSettings(
        host=settings.host,
        port=settings.port,
        username="belfry",
        password="smtp-pw-Kk3",
        timeout=5,
    )
    with pytest.raises(DeliveryFailed) as failed:
        await send_email(settings, TO, ALERT)
    assert failed.value.permanent is True
    assert "rejected the login as belfry (535" in str(failed.value)
    assert "smtp-pw-Kk3" not in str(failed.value)
    assert "smtp-pw-Kk3" not in repr(settings)
    assert not inbox.messages


# --- apprise ----------------------------------------------------------------------------


async def test_apprise_json_delivers_title_and_body(
    httpserver: HTTPServer, senders: ChannelSenders
) -> None:
    httpserver.expect_request("/apprise", method="POST").respond_with_data("ok")
    channel = ChannelSpec(name="chat", apprise=f"json://127.0.0.1:{httpserver.port}/apprise")
    await senders.send(channel, ALERT, 3)
    httpserver.check_assertions()
    request, _ = httpserver.log[0]
    document = json.loads(request.get_data())
    assert document["title"] == ALERT.title
    assert document["message"] == ALERT.text()
    assert document["type"] == "failure"


async def test_apprise_failure_is_retryable_and_names_the_scheme_only(
    httpserver: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    httpserver.expect_request("/apprise/tok-Mm2Pq").respond_with_response(
        Response("down", status=503)
    )
    url = f"json://bot:tok-Hh5Jk@127.0.0.1:{httpserver.port}/apprise/tok-Mm2Pq"
    caplog.set_level(logging.DEBUG, logger="apprise")
    with pytest.raises(DeliveryFailed) as failed:
        await send_apprise(url, ALERT)
    assert failed.value.permanent is False
    message = str(failed.value)
    assert message.startswith("apprise json:// (JSON) did not take the alert")
    for part in ("tok-", "bot", "127.0.0.1", str(httpserver.port), "/apprise"):
        assert part not in message
    # Apprise's own log lines reach ours with every URL masked.
    logged = [record.getMessage() for record in caplog.records if record.name == "apprise"]
    assert any("Failed to send JSON" in line for line in logged)
    assert not [line for line in logged if "tok-" in line]


async def test_apprise_unknown_scheme_is_permanent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="apprise")
    for url in ("nosuch://x", "nosuch://sekrit-tok3n/path"):
        with pytest.raises(DeliveryFailed) as failed:
            await send_apprise(url, ALERT)
        assert failed.value.permanent is True
        message = str(failed.value)
        assert message == "not a usable apprise URL (scheme 'nosuch' is unknown)"
        assert "://" not in message
    logged = [record.getMessage() for record in caplog.records]
    assert "Unparseable URL nosuch://***" in logged
    assert not [line for line in logged if "sekrit" in line or "s...n" in line]


async def test_apprise_known_scheme_with_bad_parts_is_permanent(senders: ChannelSenders) -> None:
    channel = ChannelSpec(name="chat", apprise="slack://T1JJ3T3L2/only-one-token")
    with pytest.raises(DeliveryFailed) as failed:
        await senders.send(channel, ALERT, 1)
    assert failed.value.permanent is True
    assert "scheme 'slack' is known, but a part of the URL is missing or invalid" in str(
        failed.value
    )
    assert "T1JJ3T3L2" not in str(failed.value)
