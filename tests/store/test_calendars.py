"""Store contract: calendars are created, replaced and deleted with jobs, atomically."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from belfry.adapters.store import SqlStore
from belfry.core.calendars import CalendarSpec
from belfry.core.jobs import JobSpec
from belfry.core.records import JobWrite

T0 = datetime(2027, 1, 4, 9, 0, 0, 250000, tzinfo=UTC)


def calendar(name: str, **fields: object) -> CalendarSpec:
    return CalendarSpec.model_validate({"name": name, "dates": ["2027-12-24"], **fields})


async def test_calendars_are_created_replaced_and_deleted(store: SqlStore) -> None:
    holidays = calendar("holidays", timezone="Europe/Berlin", description="Christmas")
    weekends = CalendarSpec.model_validate({"name": "weekends", "weekly": [{"days": "SAT,SUN"}]})
    await store.apply_jobs([], [], T0, calendars=[weekends, holidays])

    listed = await store.list_calendars()
    assert [record.name for record in listed] == ["holidays", "weekends"]
    assert listed[0].spec == holidays
    assert listed[1].spec == weekends
    assert listed[0].created_at == listed[0].updated_at == T0

    later = T0 + timedelta(hours=1)
    changed = calendar("holidays", dates=["2027-12-24", "2027-12-31"])
    await store.apply_jobs([], [], later, calendars=[changed])
    replaced = {record.name: record for record in await store.list_calendars()}
    assert replaced["holidays"].spec == changed
    assert (replaced["holidays"].created_at, replaced["holidays"].updated_at) == (T0, later)
    assert replaced["weekends"].updated_at == T0

    await store.apply_jobs([], [], later, delete_calendars=["weekends", "never-existed"])
    assert [record.name for record in await store.list_calendars()] == ["holidays"]


async def test_a_failed_apply_writes_no_calendar(store: SqlStore) -> None:
    job = JobSpec(name="twice", schedule="* * * * *", command="true")
    with pytest.raises(ValueError, match="twice"):
        await store.apply_jobs(
            [JobWrite(job, T0), JobWrite(job, T0)], [], T0, calendars=[calendar("holidays")]
        )
    assert await store.list_calendars() == []

    with pytest.raises(ValueError, match="written twice"):
        await store.apply_jobs([], [], T0, calendars=[calendar("a"), calendar("a")])
    assert await store.list_calendars() == []


async def test_calendars_and_jobs_land_in_one_transaction(store: SqlStore) -> None:
    job = JobSpec(name="billing", schedule="0 9 * * *", command="true", exclude=["holidays"])
    await store.apply_jobs([JobWrite(job, T0)], [], T0, calendars=[calendar("holidays")])
    stored = await store.get_job("default", "billing")
    assert stored is not None and stored.spec.exclude == ["holidays"]
    assert [record.name for record in await store.list_calendars()] == ["holidays"]
