"""How the admin pages show values: JSON-ready data on one line, capacities, offsets."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["capacity", "clock_offset", "one_line"]


def one_line(value: Any) -> str:
    """A JSON-ready value as people read it in a diff or a definition: text as it is,
    anything else as compact JSON; absent as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)


def capacity(slots: int | None, cpu: float | None, memory_mb: int | None) -> str:
    """A worker's declared capacity: ``4 slots · 2 CPU · 512 MiB``, or ``no limit``."""
    parts = []
    if slots is not None:
        parts.append(f"{slots} slot{'' if slots == 1 else 's'}")
    if cpu is not None:
        parts.append(f"{cpu:g} CPU")
    if memory_mb is not None:
        parts.append(f"{memory_mb / 1024:g} GiB" if memory_mb >= 1024 else f"{memory_mb} MiB")
    return " · ".join(parts) or "no limit"


def clock_offset(seconds: float | None) -> str:
    """A node's clock offset from the database's, signed, in the unit that reads best."""
    if seconds is None:
        return "not measured yet"
    if abs(seconds) < 1:
        return f"{seconds * 1000:+.0f} ms"
    return f"{seconds:+.1f} s"
