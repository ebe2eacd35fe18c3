"""Log lines as text or as JSON (``--log-format``), for ``belfry server`` and ``belfry
worker`` alike.

Text is for people at a terminal; JSON, one object per line, is for log shippers (Loki,
Elasticsearch, CloudWatch), which index its fields: ``time`` (RFC 3339, UTC), ``level``,
``logger``, ``message``, then whatever the call passed as ``extra`` (every line about a run
carries ``job`` and ``run_id``), and ``exception`` with its traceback, in the same line.
In text the extra fields follow the message as ``key=value``.

Why a module of the worker package: both processes install these formatters, and the
layers import-linter enforces leave one place both may import. ``belfry.core`` may not
import ``logging`` (it stays pure); the worker may import neither the server, nor the
services, adapters or ports; the server may import the worker (it embeds one, and already
shares its process plumbing, ``worker.child_watcher``). Nothing here is specific to
running jobs.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from enum import StrEnum

__all__ = ["JsonFormatter", "LogFormat", "TextFormatter", "configure_logging", "extra_fields"]

# Every attribute a LogRecord has without ``extra`` (``taskName`` since Python 3.12), and
# those formatting adds; uvicorn passes ``color_message``, a copy of the message with
# terminal colours.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


def extra_fields(record: logging.LogRecord) -> dict[str, object]:
    """What the logging call passed as ``extra``, in the order it passed it."""
    return {key: value for key, value in vars(record).items() if key not in _STANDARD}


def _logfmt(value: object) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n'):
        return json.dumps(text, ensure_ascii=False)
    return text


class TextFormatter(logging.Formatter):
    """``2027-03-01 12:00:00,123 INFO belfry.services.runs: run 7 of a/b started ...
    job=a/b run_id=7`` (a traceback, if any, on the lines after)."""

    def __init__(self) -> None:
        super().__init__(_TEXT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = extra_fields(record)
        if not fields:
            return line
        shown = " ".join(f"{key}={_logfmt(value)}" for key, value in fields.items())
        first, newline, rest = line.partition("\n")
        return f"{first} {shown}{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line; newlines inside values are escaped, so a traceback never
    splits a record."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            entry.setdefault(key, value)  # never hide the four fields above
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an extra value JSON has no type for (a datetime, a Path) as text.
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(log_format: LogFormat, level: str | int = logging.INFO) -> None:
    """Send every logger's records to stderr in ``log_format`` (once per process)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format is LogFormat.JSON else TextFormatter())
    if isinstance(level, str):
        level = level.upper()
    logging.basicConfig(level=level, handlers=[handler])
