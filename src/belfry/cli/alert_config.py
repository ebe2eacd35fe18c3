"""The server config's alert sections: ``smtp:`` (how e-mail alerts go out) and
``alerts:`` (how often the notifier looks, when a stalled scheduler is alerted).

Checked at start, so a typo stops the server with one line naming the key rather than
surfacing at the first alert.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from belfry.adapters.notify import SmtpSettings
from belfry.cli.errors import EXIT_BAD_INPUT, CliError
from belfry.core.durations import Duration
from belfry.services.notifier import NotifierSettings

__all__ = ["notifier_settings", "smtp_settings"]


class _Smtp(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)

    host: str = "localhost"
    port: int = Field(default=25, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    password_file: Path | None = None  # keeps the password out of the config file
    starttls: bool = False
    tls: bool = False
    sender: str = "belfry@localhost"
    timeout: float = Field(default=10.0, gt=0)


class _Alerts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    interval: float = Field(default=5.0, gt=0, le=60)
    stall_after: Duration = timedelta(minutes=1)


def _checked(model: type[BaseModel], section: str, value: Any, config: Path | None) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in (section, *first["loc"]))
        raise CliError(f"{config}: {where}: {first['msg']}", EXIT_BAD_INPUT) from None


def smtp_settings(value: Any, config: Path | None) -> SmtpSettings | None:
    """The ``smtp:`` section (None without one)."""
    if value is None:
        return None
    smtp: _Smtp = _checked(_Smtp, "smtp", value, config)
    password = smtp.password
    if smtp.password_file is not None:
        try:
            password = smtp.password_file.read_text().strip()
        except OSError as error:
            raise CliError(
                f"{config}: smtp.password_file: cannot read {smtp.password_file}: {error.strerror}",
                EXIT_BAD_INPUT,
            ) from None
    return SmtpSettings(
        host=smtp.host,
        port=smtp.port,
        username=smtp.username,
        password=password,
        starttls=smtp.starttls,
        use_tls=smtp.tls,
        sender=smtp.sender,
        timeout=smtp.timeout,
    )


def notifier_settings(value: Any, config: Path | None) -> NotifierSettings:
    """The ``alerts:`` section (defaults without one)."""
    if value is None:
        return NotifierSettings()
    alerts: _Alerts = _checked(_Alerts, "alerts", value, config)
    return NotifierSettings(interval=alerts.interval, stall_after=alerts.stall_after)
