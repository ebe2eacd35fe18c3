"""The one rule for names users give things: jobs, groups, calendars, channels."""

from __future__ import annotations

import re

__all__ = ["NAME_PATTERN", "NAME_RULE", "is_valid_name"]

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
NAME_RULE = "must be 1-100 characters of a-z, 0-9, '-', '_', '.', starting with a letter or digit"


def is_valid_name(value: str) -> bool:
    return bool(NAME_PATTERN.match(value))
