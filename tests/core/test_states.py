"""The run lifecycle (DESIGN.md "Run lifecycle"): exactly these transitions, no others."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from belfry.core.states import (
    ACTIVE_STATES,
    FINAL_STATES,
    IllegalTransition,
    RunState,
    allowed_sources,
    check_transition,
    is_final,
)

S = RunState
ENDINGS = {S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.KILLED, S.LOST}
# Written out independently of the module: the documented lifecycle.
LIFECYCLE: dict[RunState | None, set[RunState]] = {
    None: {S.SCHEDULED, S.SKIPPED},  # born scheduled, or born skipped
    S.SCHEDULED: {S.CLAIMED, S.SKIPPED, S.KILLED, S.LOST},  # taken, skipped, cancelled
    S.CLAIMED: {S.RUNNING, S.SCHEDULED, *ENDINGS},  # may fail to start; or be handed back
    S.RUNNING: set(ENDINGS),
}
SOURCES: list[RunState | None] = [None, *RunState]


def is_allowed(current: RunState | None, target: RunState) -> bool:
    try:
        check_transition(current, target)
    except IllegalTransition:
        return False
    return True


@pytest.mark.parametrize(("current", "target"), list(itertools.product(SOURCES, RunState)))
def test_every_pair(current: RunState | None, target: RunState) -> None:
    assert is_allowed(current, target) == (target in LIFECYCLE.get(current, set()))


@given(st.sampled_from(SOURCES), st.sampled_from(list(RunState)))
def test_check_transition_accepts_exactly_the_lifecycle(
    current: RunState | None, target: RunState
) -> None:
    if target in LIFECYCLE.get(current, set()):
        check_transition(current, target)
    else:
        with pytest.raises(IllegalTransition) as raised:
            check_transition(current, target)
        assert raised.value.current == current
        assert raised.value.target == target
        assert str(target) in str(raised.value)


@given(st.sampled_from(sorted(FINAL_STATES)), st.sampled_from(list(RunState)))
def test_final_states_have_no_way_out(final: RunState, target: RunState) -> None:
    assert is_final(final)
    with pytest.raises(IllegalTransition):
        check_transition(final, target)


def test_final_and_active_states() -> None:
    assert {S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.KILLED, S.LOST, S.SKIPPED} == FINAL_STATES
    assert {S.CLAIMED, S.RUNNING} == ACTIVE_STATES
    assert not FINAL_STATES & ACTIVE_STATES
    assert not is_final(S.SCHEDULED)


@pytest.mark.parametrize("target", list(RunState))
def test_allowed_sources_agree_with_check_transition(target: RunState) -> None:
    assert allowed_sources(target) == {state for state in RunState if is_allowed(state, target)}


def test_new_runs_are_described_as_new() -> None:
    with pytest.raises(IllegalTransition, match="illegal run transition new -> running"):
        check_transition(None, S.RUNNING)


@given(st.lists(st.integers(0, 100), max_size=10))
def test_every_walk_ends_in_a_final_state_without_cycles(choices: list[int]) -> None:
    """The one way back is a hand back (claimed -> scheduled: the walk starts over from
    scheduled); otherwise no state is entered twice, and every walk ends in a final state."""
    state: RunState | None = None
    seen: list[RunState] = []
    for choice in [*choices, *([0] * 5)]:
        options = sorted(target for target in RunState if is_allowed(state, target))
        if not options:
            break
        previous, state = state, options[choice % len(options)]
        if (previous, state) == (S.CLAIMED, S.SCHEDULED):
            seen = [S.SCHEDULED]
            continue
        assert state not in seen  # no state is ever entered twice
        seen.append(state)
    assert state is not None
    assert is_final(state)
    assert len(seen) <= 4  # scheduled -> claimed -> running -> an ending
