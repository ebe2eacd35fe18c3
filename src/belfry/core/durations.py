"""Human durations: ``90s``, ``5m``, ``1h30m``, ``2d``, ``500ms``."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["format_duration", "parse_duration"]

_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_WORDS = {
    "second": "s", "seconds": "s", "sec": "s", "secs": "s",
    "minute": "m", "minutes": "m", "min": "m", "mins": "m",
    "hour": "h", "hours": "h", "day": "d", "days": "d", "week": "w", "weeks": "w",
}


def parse_duration(text: str | int | float) -> timedelta:
    """Parse ``1h30m``-style text (or a number of seconds) into a positive timedelta.

    Raises ValueError with a message fit to show the user.
    """
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    if isinstance(text, int | float):
        if text <= 0:
            raise ValueError(f"duration must be positive, got {text}")
        return timedelta(seconds=text)
    compact = text.strip().lower()
    # "5 minutes" / "1 hour": the spelled-out form AWS rate() and people use.
    spelled = re.fullmatch(r"(\d+)\s*([a-z]+)", compact)
    if spelled and spelled.group(2) in _WORDS:
        compact = spelled.group(1) + _WORDS[spelled.group(2)]
    compact = compact.replace(" ", "")
    if not compact or _PART.sub("", compact):
        raise ValueError(
            f"not a duration: {text!r} (use e.g. 90s, 5m, 1h30m, 2d)"
        )
    total = timedelta()
    for number, unit in _PART.findall(compact):
        total += float(number) * _UNITS[unit]
    if total <= timedelta():
        raise ValueError(f"duration must be positive, got {text!r}")
    return total


def format_duration(value: timedelta) -> str:
    """The shortest ``1h30m``-style text that parses back to ``value``."""
    milliseconds = round(value.total_seconds() * 1000)
    if milliseconds % 1000:
        return f"{milliseconds}ms"
    seconds = milliseconds // 1000
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
