"""Job chains' pure rules: what counts, when a fan-in completes, cycles, words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from belfry.core.chains import AfterSpec, ChainOn, describe_after, fan_in_complete, find_cycle
from belfry.core.chains import qualifies as counts
from belfry.core.jobs import JobSpec
from belfry.core.states import RunState

T0 = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


def test_what_counts_for_each_on() -> None:
    assert counts(RunState.SUCCEEDED, ChainOn.SUCCESS)
    assert not counts(RunState.FAILED, ChainOn.SUCCESS)
    for failed in (RunState.FAILED, RunState.TIMED_OUT, RunState.LOST):
        assert counts(failed, ChainOn.FAILURE) and counts(failed, ChainOn.ALWAYS)
    assert not counts(RunState.KILLED, ChainOn.FAILURE) and counts(RunState.KILLED, ChainOn.ALWAYS)
    assert not counts(RunState.SUCCEEDED, ChainOn.FAILURE)
    assert counts(RunState.SUCCEEDED, ChainOn.ALWAYS)
    for nothing_ran in (RunState.SKIPPED, RunState.RUNNING, RunState.SCHEDULED):
        assert not counts(nothing_ran, ChainOn.ALWAYS)


def test_a_fan_in_needs_every_other_job_within_the_window_and_after_the_last_run() -> None:
    after = AfterSpec(jobs=["a", "b", "c"], within=timedelta(hours=1))
    fresh = {"b": T0 - timedelta(minutes=5), "c": T0 - timedelta(minutes=59)}
    assert fan_in_complete(after, T0, fresh, last_chained=None)
    assert not fan_in_complete(after, T0, {**fresh, "c": None}, None), "c never ran"
    too_old = {**fresh, "c": T0 - timedelta(minutes=61)}
    assert not fan_in_complete(after, T0, too_old, None), "c ended outside the window"
    # b's run was used by the last chained run: it waits for a new one.
    assert not fan_in_complete(after, T0, fresh, last_chained=T0 - timedelta(minutes=5))
    assert fan_in_complete(after, T0, fresh, last_chained=T0 - timedelta(minutes=60))
    assert not fan_in_complete(after, T0, {**fresh, "b": T0 + timedelta(seconds=1)}, None)
    any_of = AfterSpec(jobs=["a", "b"], any=True)
    assert fan_in_complete(any_of, T0, {"b": None}, last_chained=T0)


def test_cycles_are_found_with_their_path() -> None:
    assert find_cycle({"x/a": ["x/b"], "x/b": ["x/c"], "x/c": []}) is None
    assert find_cycle({"x/a": ["x/b"], "x/b": ["x/c"], "x/c": ["x/a"]}) == [
        "x/a",
        "x/b",
        "x/c",
        "x/a",
    ]
    assert find_cycle({"x/a": ["x/a"]}) == ["x/a", "x/a"]
    # A diamond is no cycle; a long chain is walked without recursion.
    assert find_cycle({"d": ["b", "c"], "b": ["a"], "c": ["a"], "a": []}) is None
    long_chain = {f"j{i}": [f"j{i + 1}"] for i in range(5000)}
    assert find_cycle(long_chain) is None
    assert find_cycle({**long_chain, "j5000": ["j0"]}) is not None


def test_after_in_yaml_forms_and_words() -> None:
    def job(**extra: object) -> JobSpec:
        return JobSpec.model_validate({"name": "load", "group": "etl", "command": "true", **extra})

    plain = job(after=["extract"])
    assert plain.schedule is None and plain.after is not None
    assert plain.after.keys("etl") == ["etl/extract"]
    assert plain.parsed_schedule().next_after(T0) is None
    assert plain.parsed_schedule().describe() == "Runs after etl/extract succeeds"
    fan_in = job(after={"jobs": ["extract", "ops/dump"], "within": "2h"})
    assert describe_after(fan_in.after, "etl") == (  # type: ignore[arg-type]
        "after etl/extract and ops/dump succeed (within 2h)"
    )
    any_of = job(after_any=["a", "b", "c"])
    assert any_of.after == AfterSpec(jobs=["a", "b", "c"], any=True)
    assert describe_after(any_of.after, "etl") == "after etl/a, etl/b or etl/c succeeds"
    on_failure = job(after={"jobs": ["extract"], "on": "failure"})
    assert describe_after(on_failure.after, "etl") == "after etl/extract fails"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({}, "schedule: a job needs a schedule, or after: to run after other jobs"),
        ({"schedule": "@daily", "after": ["a"]}, "after: a job runs on its schedule or after"),
        ({"after": ["load"]}, "after: a job cannot run after itself"),
        ({"after": ["no way"]}, "'no way' is not a job"),
        ({"after": []}, "at least 1 item"),
        ({"after": ["a", "a"]}, "names a job twice"),
        ({"after": {"jobs": ["a"], "within": "0s"}}, "duration must be positive"),
        ({"after": ["a"], "after_any": ["b"]}, "after_any: give after or after_any, not both"),
    ],
)
def test_bad_after_is_refused_naming_the_field(extra: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        JobSpec.model_validate({"name": "load", "group": "etl", "command": "true", **extra})
