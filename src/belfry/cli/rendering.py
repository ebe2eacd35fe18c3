"""Printing data as a table (people) or JSON (scripts)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["OutputFormat", "print_json", "print_table", "short_time"]

# Piped output keeps whole lines (grep-able) instead of wrapping at 80 columns.
_console = Console(highlight=False, width=None if sys.stdout.isatty() else 240)


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None
) -> None:
    table = Table(*columns, title=title, header_style="bold", box=None, pad_edge=False)
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    _console.print(table)


def short_time(value: str | None) -> str:
    """An RFC 3339 UTC time from the API as ``YYYY-MM-DD HH:MM:SS`` (UTC), or ``-``."""
    if not value:
        return "-"
    instant = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    text = instant.strftime("%Y-%m-%d %H:%M:%S")
    if instant.microsecond:
        text += f".{instant.microsecond // 1000:03d}"
    return text + "Z"
