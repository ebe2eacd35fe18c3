"""Deterministic jitter: later than the instant, before the next one, the same every time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from belfry.core.policies import jitter_offset

T0 = datetime(2027, 1, 1, tzinfo=UTC)

instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
)
durations = st.integers(min_value=1, max_value=86_400).map(lambda s: timedelta(seconds=s))


@given(seed=st.text(max_size=20), instant=instants, jitter=durations, gap=durations)
def test_offset_stays_between_the_instant_and_the_next(
    seed: str, instant: datetime, jitter: timedelta, gap: timedelta
) -> None:
    offset = jitter_offset(seed, instant, jitter, instant + gap)
    assert timedelta(0) <= offset < min(jitter, gap)
    assert offset == jitter_offset(seed, instant, jitter, instant + gap)


def test_occurrences_and_jobs_spread_out() -> None:
    jitter = timedelta(seconds=30)
    per_minute = {
        jitter_offset("ops/sync", T0 + timedelta(minutes=n), jitter, None) for n in range(50)
    }
    per_job = {jitter_offset(f"ops/job-{n}", T0, jitter, None) for n in range(50)}
    # 50 draws over 30 s at microsecond resolution: collisions would mean no spreading.
    assert len(per_minute) == 50 and len(per_job) == 50
    assert max(per_job) - min(per_job) > timedelta(seconds=20)
