"""The database's time read off a server's clock: never ahead of the database's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from belfry.services.database_time import DatabaseTime
from tests.services.fake_clock import FakeClock

T0 = datetime(2027, 3, 1, 12, tzinfo=UTC)
MS = timedelta(milliseconds=1)


def test_the_offset_is_a_lower_bound_tightened_by_fast_round_trips() -> None:
    time = DatabaseTime(FakeClock(T0))
    true_offset = 0.250  # the database is 250 ms ahead of this server
    # A slow round trip whose request left late (the database read its clock late in
    # it): the midpoint would put the clock 40 ms ahead of the database; the bound never.
    before, after = T0, T0 + 100 * MS
    read_at = before + 90 * MS
    estimate = time.observe(before, read_at + timedelta(seconds=true_offset), after)
    assert estimate <= true_offset
    midpoint_estimate = (read_at - (before + (after - before) / 2)).total_seconds() + true_offset
    assert midpoint_estimate > true_offset + 0.03
    # A fast round trip tightens it to within a millisecond.
    before, after = T0 + timedelta(seconds=1), T0 + timedelta(seconds=1) + MS
    estimate = time.observe(before, before + timedelta(seconds=true_offset), after)
    assert true_offset - 0.002 <= estimate <= true_offset
    # A later slow sample does not loosen it.
    before = T0 + timedelta(seconds=2)
    later = time.observe(before, before + timedelta(seconds=true_offset), before + 300 * MS)
    assert later == estimate and time.offset == estimate


def test_a_stepped_local_clock_clears_the_old_samples() -> None:
    time = DatabaseTime(FakeClock(T0))
    time.observe(T0, T0 + MS, T0 + 2 * MS)
    assert abs(time.offset or 0) < 0.002
    # The local clock jumped 5 s ahead: the old samples contradict the new one.
    before = T0 + timedelta(seconds=6)
    offset = time.observe(before, before - timedelta(seconds=5), before + MS)
    assert -5.002 <= offset <= -4.999
    # Samples older than the window are forgotten too.
    old = DatabaseTime(FakeClock(T0), window=timedelta(seconds=10))
    old.observe(T0, T0 + 100 * MS, T0 + MS)  # a lower bound of +99 ms
    late = T0 + timedelta(seconds=11)
    assert old.observe(late, late + 50 * MS, late + MS) < 0.05
