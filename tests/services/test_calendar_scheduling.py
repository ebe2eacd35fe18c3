"""Calendars end to end below the API: apply checks them, the scheduler obeys them.

Real stores (SQLite and PostgreSQL), a fake clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from belfry.adapters.store import SqlStore, open_store
from belfry.core.calendars import CalendarSpec
from belfry.core.jobs import JobSpec
from belfry.core.records import RunRecord
from belfry.core.states import RunState
from belfry.services.jobs import CalendarInUse, JobService
from belfry.services.scheduler import Scheduler
from tests.services.fake_clock import FakeClock

# Monday 2027-03-01, 07:00 UTC = 08:00 in Berlin (CET).
MONDAY = datetime(2027, 3, 1, 7, 0, tzinfo=UTC)

HOLIDAYS = CalendarSpec.model_validate(
    {"name": "holidays", "timezone": "Europe/Berlin", "dates": ["2027-03-02"]}
)
MORNINGS = CalendarSpec.model_validate(
    {
        "name": "late-mornings",
        "timezone": "Europe/Berlin",
        "weekly": [{"days": "MON-FRI", "from": "10:30", "to": "12:00"}],
        "exclude": ["holidays"],
    }
)


def job(name: str, **fields: object) -> JobSpec:
    return JobSpec.model_validate(
        {"name": name, "schedule": "0 9 * * *", "timezone": "Europe/Berlin", "command": "true"}
        | fields
    )


async def _runs(store: SqlStore, name: str) -> list[RunRecord]:
    record = await store.get_job("default", name)
    assert record is not None
    return sorted(await store.list_runs(job_id=record.id, limit=100), key=lambda r: r.scheduled_for)


async def _days(store: SqlStore, clock: FakeClock, scheduler: Scheduler, days: int) -> None:
    """Let the scheduler handle ``days`` days, one pass per hour."""
    for _ in range(days * 24):
        clock.current += timedelta(hours=1)
        await scheduler.run_once()


@pytest.fixture
async def store(store_url: str) -> SqlStore:
    opened = await open_store(store_url)
    yield opened  # type: ignore[misc]
    await opened.close()


async def test_excluded_occurrences_are_skipped_with_the_calendar_named(store: SqlStore) -> None:
    clock = FakeClock(MONDAY)
    jobs = JobService(store, clock, on_change=lambda: None)
    await jobs.apply([job("report", exclude=["holidays"])], calendars=[HOLIDAYS])
    await _days(store, clock, Scheduler(store, clock, on_runs_created=lambda: None), 3)

    runs = await _runs(store, "report")
    assert [(run.scheduled_for.day, run.state, run.reason) for run in runs] == [
        (1, RunState.SCHEDULED, None),
        (2, RunState.SKIPPED, "calendar:holidays"),
        (3, RunState.SCHEDULED, None),
    ]


async def test_only_with_defer_starts_the_run_when_the_window_opens(store: SqlStore) -> None:
    clock = FakeClock(MONDAY)
    jobs = JobService(store, clock, on_change=lambda: None)
    await jobs.apply(
        [job("sync", only=["late-mornings"], on_excluded="defer")],
        calendars=[HOLIDAYS, MORNINGS],
    )
    await _days(store, clock, Scheduler(store, clock, on_runs_created=lambda: None), 3)

    runs = await _runs(store, "sync")
    assert [run.scheduled_for.day for run in runs] == [1, 2, 3]
    monday, tuesday, wednesday = runs
    # 09:00 is before the window: the run waits for 10:30 Berlin (09:30 UTC) that day.
    assert monday.state is RunState.SCHEDULED
    assert monday.not_before == datetime(2027, 3, 1, 9, 30, tzinfo=UTC)
    assert monday.reason and monday.reason.startswith("calendar:late-mornings: deferred")
    # Tuesday is a holiday, excluded from the window: deferred to Wednesday 10:30 would pass
    # Wednesday's own 09:00 occurrence, so Tuesday's is coalesced into it.
    assert tuesday.state is RunState.SKIPPED
    assert tuesday.reason and tuesday.reason.startswith("calendar:late-mornings")
    assert wednesday.not_before == datetime(2027, 3, 3, 9, 30, tzinfo=UTC)


async def test_apply_refuses_unknown_or_circular_calendars_and_applies_nothing(
    store: SqlStore,
) -> None:
    clock = FakeClock(MONDAY)
    jobs = JobService(store, clock, on_change=lambda: None)
    with pytest.raises(ValueError, match="unknown calendar 'holidays'"):
        await jobs.apply([job("report", exclude=["holidays"])])
    loop_a = CalendarSpec.model_validate({"name": "a", "include": ["b"]})
    loop_b = CalendarSpec.model_validate({"name": "b", "include": ["a"]})
    with pytest.raises(ValueError, match="includes itself"):
        await jobs.apply([job("report")], calendars=[loop_a, loop_b])
    assert await store.list_jobs() == []
    assert await store.list_calendars() == []


async def test_a_calendar_in_use_cannot_be_deleted(store: SqlStore) -> None:
    clock = FakeClock(MONDAY)
    jobs = JobService(store, clock, on_change=lambda: None)
    await jobs.apply([job("report", exclude=["holidays"])], calendars=[HOLIDAYS, MORNINGS])
    with pytest.raises(CalendarInUse, match="job default/report, calendar late-mornings"):
        await jobs.delete_calendar("holidays")
    await jobs.apply([job("report")], calendars=[])
    await jobs.delete_calendar("late-mornings")
    await jobs.delete_calendar("holidays")
    assert await store.list_calendars() == []


async def test_apply_reports_calendar_changes(store: SqlStore) -> None:
    clock = FakeClock(MONDAY)
    jobs = JobService(store, clock, on_change=lambda: None)
    first = await jobs.apply([], calendars=[HOLIDAYS])
    assert [(c.job, c.action) for c in first.calendar_changes] == [("holidays", "create")]
    again = await jobs.apply([], calendars=[HOLIDAYS])
    assert [c.action for c in again.calendar_changes] == ["unchanged"]
    moved = HOLIDAYS.model_copy(update={"dates": [datetime(2027, 3, 3).date()]})
    changed = await jobs.apply([], calendars=[moved], dry_run=True)
    assert changed.calendar_changes[0].action == "update"
    assert changed.calendar_changes[0].fields == {"dates": (["2027-03-02"], ["2027-03-03"])}
    stored = await store.list_calendars()
    assert stored[0].spec == HOLIDAYS  # a dry run writes nothing
