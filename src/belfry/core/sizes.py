"""Memory sizes as users write them (``512Mi``, ``2G``, ``1.5Gi``, ``800M``), in MiB."""

from __future__ import annotations

import re

__all__ = ["parse_memory_mb"]

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T|B)?", re.IGNORECASE)
# Bytes per unit: the binary ones as Kubernetes writes them, the decimal ones too.
_UNITS = {
    "b": 1,
    "k": 1000,
    "m": 1000**2,
    "g": 1000**3,
    "t": 1000**4,
    "ki": 1024,
    "mi": 1024**2,
    "gi": 1024**3,
    "ti": 1024**4,
}


def parse_memory_mb(text: str | int) -> int:
    """The size in whole MiB (rounded up); a bare number is MiB. ValueError if unreadable."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"a memory size cannot be negative: {text}")
        return text
    match = _SIZE.fullmatch(str(text).strip())
    if not match:
        raise ValueError(f"not a memory size: {text!r} (write e.g. 512Mi, 2Gi or 800M)")
    number = float(match.group(1))
    unit = (match.group(2) or "mi").lower()
    size = number * _UNITS[unit]
    return int(-(-size // 1024**2))
