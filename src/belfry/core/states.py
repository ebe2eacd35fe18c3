"""The run state machine (DESIGN.md "Run lifecycle").

``scheduled -> claimed -> running -> succeeded | failed | timed_out | killed | lost``
and ``scheduled -> skipped``; ``claimed -> scheduled`` when a stopping worker hands back a
run it has not started (another worker then takes it, on time). A retry is a new run (a
new attempt of the same occurrence), never a transition back out of a final state.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ACTIVE_STATES",
    "FINAL_STATES",
    "Actor",
    "IllegalTransition",
    "RunState",
    "allowed_sources",
    "check_transition",
    "is_final",
]


class RunState(StrEnum):
    SCHEDULED = "scheduled"
    CLAIMED = "claimed"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    KILLED = "killed"
    LOST = "lost"
    SKIPPED = "skipped"


class Actor(StrEnum):
    """Who caused a transition; recorded on every run event."""

    SCHEDULER = "scheduler"
    WORKER = "worker"
    USER = "user"
    REAPER = "reaper"


FINAL_STATES = frozenset(
    {
        RunState.SUCCEEDED,
        RunState.FAILED,
        RunState.TIMED_OUT,
        RunState.KILLED,
        RunState.LOST,
        RunState.SKIPPED,
    }
)
ACTIVE_STATES = frozenset({RunState.CLAIMED, RunState.RUNNING})

_ENDINGS = frozenset(
    {RunState.SUCCEEDED, RunState.FAILED, RunState.TIMED_OUT, RunState.KILLED, RunState.LOST}
)
_ALLOWED: dict[RunState | None, frozenset[RunState]] = {
    # A run is born scheduled, or born skipped when its occurrence is skipped.
    None: frozenset({RunState.SCHEDULED, RunState.SKIPPED}),
    # A scheduled run can be killed or lost (cancelled before a worker took it), or
    # skipped later (paused / overlap decided at claim time).
    RunState.SCHEDULED: frozenset(
        {RunState.CLAIMED, RunState.SKIPPED, RunState.KILLED, RunState.LOST}
    ),
    # A claimed run can fail to start (command not found) without ever running, or be
    # handed back unstarted by a worker that is stopping.
    RunState.CLAIMED: frozenset({RunState.RUNNING, RunState.SCHEDULED}) | _ENDINGS,
    RunState.RUNNING: _ENDINGS,
}


class IllegalTransition(ValueError):
    """A state change the lifecycle does not allow."""

    def __init__(self, current: RunState | None, target: RunState) -> None:
        super().__init__(f"illegal run transition {current or 'new'} -> {target}")
        self.current = current
        self.target = target


def is_final(state: RunState) -> bool:
    return state in FINAL_STATES


def allowed_sources(target: RunState) -> frozenset[RunState]:
    """Every state from which ``target`` may be entered (used for compare-and-set updates)."""
    return frozenset(source for source, targets in _ALLOWED.items() if source and target in targets)


def check_transition(current: RunState | None, target: RunState) -> None:
    """Raise IllegalTransition unless ``current -> target`` is part of the lifecycle."""
    if target not in _ALLOWED.get(current, frozenset()):
        raise IllegalTransition(current, target)
