"""What a worker is asked to run, and how its result is judged."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from belfry.core.schedules import format_instant
from belfry.core.states import RunState

__all__ = ["Assignment", "HttpRequest", "Outcome", "RunOrder", "judge"]


@dataclass(frozen=True)
class HttpRequest:
    """An HTTP job's request (the job's ``http:``), made by the worker instead of a command."""

    url: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    expect_status: tuple[int, ...] = (200,)


@dataclass(frozen=True)
class RunOrder:
    """A claimed run as the worker sees it: everything needed to start it, nothing more."""

    run_id: int
    job: str  # group/name
    scheduled_for: datetime
    attempt: int
    # What to run: a command (a string for /bin/sh -c, a list as argv) or an HTTP request.
    command: str | list[str] | None
    # Start no earlier than this instant (the worker waits on a monotonic timer).
    start_at: datetime
    # Secret values are in here in the clear (the run needs them): kept out of reprs.
    env: dict[str, str] = field(default_factory=dict, repr=False)
    # The job's secret values: masked as *** wherever the run's output shows them.
    secrets: tuple[str, ...] = field(default=(), repr=False)
    working_dir: str | None = None
    timeout_seconds: float | None = None
    kill_grace_seconds: float = 10.0
    success_exit_codes: tuple[int, ...] = (0,)
    failure_pattern: str | None = None
    http: HttpRequest | None = None
    # A user to run the command as (the agent must be root to switch); None: the agent's.
    run_as: str | None = None
    # The job's declared resources, counted against the worker's capacity while it runs.
    cpu: float | None = None
    memory_mb: int | None = None

    @property
    def occurrence(self) -> str:
        """Stable across retries: an idempotency key for the command's side effects."""
        return f"{self.job}@{format_instant(self.scheduled_for)}"

    def process_environment(self) -> dict[str, str]:
        """The BELFRY_* variables of INTERFACE.md plus the job's own env."""
        return {
            **self.env,
            "BELFRY_JOB": self.job,
            "BELFRY_RUN_ID": str(self.run_id),
            "BELFRY_SCHEDULED_FOR": format_instant(self.scheduled_for),
            "BELFRY_ATTEMPT": str(self.attempt),
            "BELFRY_OCCURRENCE": self.occurrence,
        }


@dataclass(frozen=True)
class Outcome:
    """How a run ended, as the worker reports it."""

    state: RunState
    exit_code: int | None
    reason: str | None = None


def judge(
    exit_code: int | None,
    *,
    success_exit_codes: tuple[int, ...],
    failure_matched: str | None,
    timed_out: bool = False,
    killed: bool = False,
    spawn_error: str | None = None,
) -> Outcome:
    """The final state of a finished process.

    Success needs BOTH an exit code in ``success_exit_codes`` AND no output line matching
    the job's failure pattern (``failure_matched`` is the first matching line, if any).
    """
    if spawn_error is not None:
        return Outcome(RunState.FAILED, exit_code, f"could not start: {spawn_error}")
    if killed:
        return Outcome(RunState.KILLED, exit_code, "killed on request")
    if timed_out:
        return Outcome(RunState.TIMED_OUT, exit_code, "timeout")
    if exit_code is None or exit_code not in success_exit_codes:
        signal_note = (
            f"killed by signal {-exit_code}" if exit_code is not None and exit_code < 0 else None
        )
        return Outcome(RunState.FAILED, exit_code, signal_note or f"exit code {exit_code}")
    if failure_matched is not None:
        return Outcome(
            RunState.FAILED, exit_code, f"failure_pattern matched: {failure_matched[:200]}"
        )
    return Outcome(RunState.SUCCEEDED, exit_code)


@dataclass(frozen=True)
class Assignment:
    """A server's answer to a worker asking for work: runs to start, runs to kill."""

    orders: list[RunOrder] = field(default_factory=list)
    kills: list[int] = field(default_factory=list)
    # The server's time (the database's, with several servers) when it handed the orders
    # out: the worker times their starts from it, not from its own clock.
    issued_at: datetime | None = None

    def started_locally(self, order: RunOrder, local_now: datetime) -> RunOrder:
        """``order`` with its start on the worker's clock: as far after ``local_now`` as
        it is after ``issued_at`` on the server's (unchanged without ``issued_at``)."""
        if self.issued_at is None:
            return order
        return replace(order, start_at=local_now + (order.start_at - self.issued_at))
