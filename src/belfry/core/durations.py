"""Human durations: ``90s``, ``5m``, ``1h30m``, ``2d``, ``500ms``, ``5 minutes``."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

__all__ = ["Duration", "format_duration", "parse_duration"]

_UNITS = {
    "us": timedelta(microseconds=1),
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
_WORDS = {
    "microsecond": "us",
    "microseconds": "us",
    "millisecond": "ms",
    "milliseconds": "ms",
    "msec": "ms",
    "msecs": "ms",
    "second": "s",
    "seconds": "s",
    "sec": "s",
    "secs": "s",
    "minute": "m",
    "minutes": "m",
    "min": "m",
    "mins": "m",
    "hour": "h",
    "hours": "h",
    "hr": "h",
    "hrs": "h",
    "day": "d",
    "days": "d",
    "week": "w",
    "weeks": "w",
}
# One "<number><unit>" part, units spelled short (1h30m) or long (1 hour 30 minutes).
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*")
_HINT = "use e.g. 90s, 5m, 1h30m, 2d or 5 minutes"


def _shown(text: object) -> str:
    shown = repr(text)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _not_a_duration(text: object) -> ValueError:
    return ValueError(f"not a duration: {_shown(text)} ({_HINT})")


def parse_duration(text: str | int | float) -> timedelta:
    """Parse ``1h30m``-style text (or a number of seconds) into a positive timedelta.

    Raises ValueError with a message fit to show the user (also for values too large).
    """
    if isinstance(text, bool):
        raise _not_a_duration(text)
    if isinstance(text, int | float):
        if not math.isfinite(text) or text <= 0:
            raise ValueError(f"duration must be a positive number of seconds, got {text!r}")
        try:
            value = timedelta(seconds=text)
        except OverflowError:
            raise ValueError(f"duration too long: {text!r} seconds") from None
        if value <= timedelta():
            raise ValueError(f"duration must be positive, got {text!r}")
        return value
    if not isinstance(text, str):
        raise _not_a_duration(text)
    compact = text.strip().lower()
    total = timedelta()
    position = 0
    if not compact:
        raise _not_a_duration(text)
    while position < len(compact):
        part = _PART.match(compact, position)
        if not part:
            raise _not_a_duration(text)
        number, word = part.groups()
        unit = word if word in _UNITS else _WORDS.get(word)
        if unit is None:
            raise ValueError(f"not a duration: {_shown(text)}: unknown unit {word!r} ({_HINT})")
        try:
            total += float(number) * _UNITS[unit]
        except (OverflowError, ValueError):
            raise ValueError(f"duration too long: {_shown(text)}") from None
        position = part.end()
    if total <= timedelta():
        raise ValueError(f"duration must be positive, got {_shown(text)}")
    return total


def format_duration(value: timedelta) -> str:
    """The shortest ``1h30m``-style text that parses back to ``value`` exactly.

    Whole seconds use d/h/m/s (``1d2h``, ``90s`` is ``1m30s``); a fraction of a second is
    written in ``ms`` (``1500ms``) or, below a millisecond, in ``us``.
    """
    if value < timedelta():
        return "-" + format_duration(-value)
    microseconds = value // timedelta(microseconds=1)
    if microseconds % 1000:
        return f"{microseconds}us"
    if microseconds % 1_000_000:
        return f"{microseconds // 1000}ms"
    seconds = microseconds // 1_000_000
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _to_timedelta(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    return parse_duration(value)


# A duration field of a spec: written as text (``90s``), held as a timedelta.
Duration = Annotated[
    timedelta,
    BeforeValidator(_to_timedelta),
    PlainSerializer(format_duration, return_type=str),
]
