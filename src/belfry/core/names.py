"""The one rule for names users give things: jobs, groups, calendars, channels."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

__all__ = ["NAME_PATTERN", "NAME_RULE", "JobKey", "is_valid_name"]

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
NAME_RULE = "must be 1-100 characters of a-z, 0-9, '-', '_', '.', starting with a letter or digit"


def is_valid_name(value: str) -> bool:
    return bool(NAME_PATTERN.match(value))


class JobKey(BaseModel):
    """``group/name``: how users name a job (here, apart from the job's spec, so that a
    CLI command naming a job does not load every job model)."""

    model_config = ConfigDict(frozen=True)

    group: str
    name: str

    @classmethod
    def parse(cls, text: str) -> JobKey:
        group, slash, name = text.partition("/")
        if not slash:
            group, name = "default", text
        if not is_valid_name(group) or not is_valid_name(name):
            raise ValueError(f"not a job name: {text!r} (expected GROUP/NAME)")
        return cls(group=group, name=name)

    def __str__(self) -> str:
        return f"{self.group}/{self.name}"
