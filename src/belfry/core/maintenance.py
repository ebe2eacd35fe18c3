"""Maintenance windows: which jobs they cover, and the reasons their skips record.

A window covers everything (scope ``*``) or one group. Pure: the store keeps the windows,
the scheduler and the run service ask here what a window means for a job.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "DEFERRED_MARK",
    "EVERYTHING",
    "MaintenanceWindow",
    "covering",
    "maintenance_reason",
]

# The scope of a window over every group.
EVERYTHING = "*"
# Ends the reason of a skip a ``defer`` job owes a run for; the store finds them by it.
DEFERRED_MARK = " (deferred: one run when maintenance ends)"


@dataclass(frozen=True)
class MaintenanceWindow:
    scope: str  # EVERYTHING or a group
    note: str | None
    started_at: datetime
    started_by: str


def covering(windows: Iterable[MaintenanceWindow], group: str) -> MaintenanceWindow | None:
    """The window ``group`` is in (its own before the global one), or None."""
    found = None
    for window in windows:
        if window.scope == group:
            return window
        if window.scope == EVERYTHING:
            found = window
    return found


def maintenance_reason(window: MaintenanceWindow, *, deferred: bool = False) -> str:
    """``maintenance: NOTE`` (``maintenance`` without a note), marked when deferred."""
    reason = f"maintenance: {window.note}" if window.note else "maintenance"
    return reason + DEFERRED_MARK if deferred else reason
