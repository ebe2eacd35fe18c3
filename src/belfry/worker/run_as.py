"""Running a command as another user (a job's ``run_as``), as cron does for a user's crontab."""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["RunAs", "resolve_run_as"]

# Of the agent's own environment, only these reach a command run as another user: the rest
# may hold the agent's secrets (its token), which that user must not read. As sudo's
# env_reset, plus the locale and time zone.
_KEPT_VARIABLES = ("PATH", "LANG", "LANGUAGE", "TZ", "TERM")


@dataclass(frozen=True)
class RunAs:
    """Who a command runs as: what ``subprocess`` needs to switch, and the user's variables."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    shell: str
    # False when the worker already runs as this user (and, not being root, could not set
    # the user's groups anyway).
    switch: bool = True

    def spawn_options(self) -> dict[str, Any]:
        """Popen's options that switch to this user in the child, before exec."""
        if not self.switch:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}

    def environment(self, agent_environment: Mapping[str, str]) -> dict[str, str]:
        """The base environment of the command, before the job's own variables."""
        base = {
            key: value
            for key, value in agent_environment.items()
            if key in _KEPT_VARIABLES or key.startswith("LC_")
        }
        base.setdefault("PATH", os.defpath)
        return {
            **base,
            "HOME": self.home,
            "USER": self.name,
            "LOGNAME": self.name,
            "SHELL": self.shell,
        }

    def default_working_dir(self) -> str:
        """The user's home, as cron starts a user's jobs there; / if it does not exist."""
        return self.home if Path(self.home).is_dir() else "/"


def resolve_run_as(user: str) -> RunAs:
    """The user named ``user`` (or with that numeric uid), with its primary and
    supplementary groups.

    Raises ValueError, with a message fit for the run's output, if the user does not exist
    or the agent cannot switch to it: only root can, unless it is the agent's own user.
    """
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except (KeyError, OverflowError):
        raise ValueError(f"unknown user {user!r} in run_as") from None
    root = os.geteuid() == 0
    if not root and entry.pw_uid != os.geteuid():
        raise ValueError(f"run_as needs the worker to run as root (run_as: {user!r})")
    groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
    return RunAs(
        name=entry.pw_name,
        uid=entry.pw_uid,
        gid=entry.pw_gid,
        groups=tuple(dict.fromkeys(groups)),
        home=entry.pw_dir,
        shell=entry.pw_shell or "/bin/sh",
        switch=root,
    )
