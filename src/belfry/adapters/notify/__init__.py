"""Alert delivery: the ChannelSender port over apprise, signed webhooks and SMTP."""

from belfry.adapters.notify.apprise_channel import send_apprise
from belfry.adapters.notify.email import SmtpSettings, send_email
from belfry.adapters.notify.senders import ChannelSenders
from belfry.adapters.notify.webhook import public_url, send_webhook, webhook_signature

__all__ = [
    "ChannelSenders",
    "SmtpSettings",
    "public_url",
    "send_apprise",
    "send_email",
    "send_webhook",
    "webhook_signature",
]
