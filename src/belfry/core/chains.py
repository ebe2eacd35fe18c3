"""Job chains: a job that runs after others (``after:``), and the rules that decide when.

A chained job has no schedule of its own. It runs once per finished run of the jobs it
follows that matches ``on`` (``success``, ``failure`` or ``always``); with several jobs
(fan-in) it waits until each of them has such a run, all within ``within`` of the one
that completes the set (``any: true``: any one of them is enough). Runs of the upstream
jobs count once: after a chained run, fan-in waits for new runs of every upstream job.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from belfry.core.alerts import FAILURE_STATES
from belfry.core.durations import Duration, format_duration
from belfry.core.names import is_valid_name
from belfry.core.states import RunState

__all__ = [
    "AfterSpec",
    "ChainCycle",
    "ChainOn",
    "describe_after",
    "fan_in_complete",
    "find_cycle",
    "qualifies",
    "upstream_key",
]

# How long a fan-in waits, by default, for the other jobs of its set.
DEFAULT_WITHIN = timedelta(hours=24)


class ChainOn(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    ALWAYS = "always"


def upstream_key(reference: str, group: str) -> str:
    """``GROUP/NAME`` of a reference written ``NAME`` (the job's own group) or
    ``GROUP/NAME``; ValueError for anything else."""
    parts = reference.split("/")
    if len(parts) == 1:
        parts = [group, *parts]
    if len(parts) != 2 or not all(is_valid_name(part) for part in parts):
        raise ValueError(f"{reference!r} is not a job (NAME or GROUP/NAME)")
    return "/".join(parts)


class AfterSpec(BaseModel):
    """``after:`` as written in full; a plain list means ``{jobs: LIST}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    jobs: list[str] = Field(min_length=1, max_length=100)
    on: ChainOn = ChainOn.SUCCESS
    # Any one of ``jobs`` is enough (default: each of them, within ``within``).
    any: bool = False
    within: Duration = DEFAULT_WITHIN

    @field_validator("jobs")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("names a job twice")
        return value

    def keys(self, group: str) -> list[str]:
        """The upstream jobs as ``GROUP/NAME``."""
        return [upstream_key(reference, group) for reference in self.jobs]


def after_input(value: Any) -> Any:
    """``after: [a, b]`` is short for ``after: {jobs: [a, b]}``."""
    return {"jobs": value} if isinstance(value, list) else value


def qualifies(state: RunState, on: ChainOn) -> bool:
    """Whether an upstream run that ended in ``state`` counts for ``on``: failed, timed
    out and lost are failures (as for alerts); a killed run counts only for ``always``;
    a skip never does (nothing ran)."""
    if state is RunState.SUCCEEDED:
        return on is not ChainOn.FAILURE
    if state in FAILURE_STATES:
        return on is not ChainOn.SUCCESS
    # Killed on purpose: neither a success nor a failure, but it ended.
    return state is RunState.KILLED and on is ChainOn.ALWAYS


def fan_in_complete(
    after: AfterSpec,
    completing_at: datetime,
    others: Mapping[str, datetime | None],
    last_chained: datetime | None,
) -> bool:
    """Whether a fan-in runs now: an upstream run counting for ``on`` ended at
    ``completing_at``, and ``others`` holds, for each other upstream job, when its latest
    such run ended (None: none). Each of them must have ended after the last chained run
    (``last_chained``; the runs before it were used) and within ``within`` of now."""
    if after.any:
        return True
    oldest = completing_at - after.within
    for ended in others.values():
        if ended is None or ended < oldest or ended > completing_at:
            return False
        if last_chained is not None and ended <= last_chained:
            return False
    return True


def describe_after(after: AfterSpec, group: str) -> str:
    """e.g. ``after etl/extract and etl/load succeed (within 24h)``."""
    keys = after.keys(group)
    joined = (
        keys[0]
        if len(keys) == 1
        else ", ".join(keys[:-1]) + (" or " if after.any else " and ") + keys[-1]
    )
    verb = {
        ChainOn.SUCCESS: "succeeds" if len(keys) == 1 or after.any else "succeed",
        ChainOn.FAILURE: "fails" if len(keys) == 1 or after.any else "fail",
        ChainOn.ALWAYS: "ends" if len(keys) == 1 or after.any else "end",
    }[after.on]
    window = "" if len(keys) == 1 or after.any else f" (within {format_duration(after.within)})"
    return f"after {joined} {verb}{window}"


class ChainCycle(ValueError):
    """Jobs that would wait for each other."""


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle in ``job -> jobs it runs after``, as ``[a, b, ..., a]`` (None: none)."""
    done: set[str] = set()
    for start in sorted(edges):
        if start in done:
            continue
        # Iterative depth-first search: a long chain must not hit the recursion limit.
        path: list[str] = []
        on_path: set[str] = set()
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges.get(start, ()))))]
        path.append(start)
        on_path.add(start)
        while stack:
            node, successors = stack[-1]
            step = next(successors, None)
            if step is None:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
                continue
            if step in on_path:
                return [*path[path.index(step) :], step]
            if step in done:
                continue
            stack.append((step, iter(sorted(edges.get(step, ())))))
            path.append(step)
            on_path.add(step)
    return None
