"""A worker times each start from the server's clock, not its own (clock skew)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from belfry.core.execution import Assignment, RunOrder

SERVER_NOW = datetime(2027, 3, 1, 12, 0, 0, tzinfo=UTC)


def _order(start_at: datetime) -> RunOrder:
    return RunOrder(1, "default/job", start_at, 1, "true", start_at=start_at)


def test_the_start_keeps_its_distance_from_the_servers_time() -> None:
    order = _order(SERVER_NOW + timedelta(seconds=1.2))
    assignment = Assignment(orders=[order], issued_at=SERVER_NOW)
    # The worker's clock is 30 s fast: the run starts 1.2 s after receipt on it.
    local_now = SERVER_NOW + timedelta(seconds=30)
    local = assignment.started_locally(order, local_now)
    assert local.start_at == local_now + timedelta(seconds=1.2)
    # Everything else, the nominal instant included, is the server's.
    assert local.scheduled_for == order.scheduled_for and local.run_id == order.run_id


def test_a_run_already_due_stays_due_and_an_old_server_changes_nothing() -> None:
    order = _order(SERVER_NOW - timedelta(seconds=3))
    local_now = SERVER_NOW - timedelta(seconds=30)
    due = Assignment(orders=[order], issued_at=SERVER_NOW).started_locally(order, local_now)
    assert due.start_at <= local_now
    # A server that does not send its time (an older one): the order as it came.
    assert Assignment(orders=[order]).started_locally(order, local_now) is order
