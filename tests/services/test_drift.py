"""GitOps drift: an apply from files sees what was changed elsewhere since, and does not
overwrite it without ``force`` (real stores)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from belfry.adapters.store import SqlStore, open_store
from belfry.core.jobs import JobKey, JobSpec
from belfry.services.jobs import DriftConflict, JobService
from tests.services.fake_clock import FakeClock

T0 = datetime(2027, 3, 1, 12, 0, 0, tzinfo=UTC)


def _spec(name: str, **extra: Any) -> JobSpec:
    return JobSpec.model_validate(
        {"name": name, "group": "billing", "schedule": "*/5 * * * *", "command": "true", **extra}
    )


@pytest.fixture
async def jobs(store_url: str) -> AsyncIterator[tuple[JobService, SqlStore]]:
    store = await open_store(store_url)
    try:
        yield JobService(store, FakeClock(T0), on_change=lambda: None), store
    finally:
        await store.close()


async def test_a_pause_made_elsewhere_is_drift_that_apply_will_not_undo(
    jobs: tuple[JobService, SqlStore],
) -> None:
    service, _ = jobs
    files = [_spec("invoices"), _spec("reports")]
    await service.apply(files, by="ci")
    assert {c.drift for c in (await service.apply(files, dry_run=True)).changes} == {None}

    await service.set_paused(JobKey(group="billing", name="invoices"), True, "incident", by="alice")
    preview = await service.apply(files, dry_run=True)
    change = next(c for c in preview.changes if c.job == "billing/invoices")
    assert change.action == "update" and change.fields == {"paused": (True, False)}
    assert change.drift is not None and change.drift.fields == {"paused": (False, True)}
    assert change.drift.changed_by == "alice"
    assert change.drift.summary() == "paused changed by alice at 2027-03-01T12:00:00Z"

    with pytest.raises(DriftConflict, match=r"billing/invoices \(paused changed by alice"):
        await service.apply(files)
    job = await service.get(JobKey(group="billing", name="invoices"))
    assert job.paused and job.pause_note == "incident", "nothing was applied"

    # With force, the files win: the job runs again.
    result = await service.apply(files, force=True, by="ci")
    assert [c.action for c in result.changes] == ["update", "unchanged"]
    job = await service.get(JobKey(group="billing", name="invoices"))
    assert not job.paused and job.pause_note is None
    assert (await service.apply(files, dry_run=True)).changes[0].drift is None


async def test_files_that_say_what_was_changed_by_hand_take_the_job_back(
    jobs: tuple[JobService, SqlStore],
) -> None:
    service, _ = jobs
    await service.apply([_spec("invoices")])
    # Someone changes the timeout through the UI's apply page.
    await service.apply([_spec("invoices", timeout="1h")], from_files=False, by="bob")
    job = await service.get(JobKey(group="billing", name="invoices"))
    assert job.spec.timeout is not None and job.applied_spec is not None
    assert job.applied_spec.timeout is None, "the files' version is kept"

    conflict = (await service.apply([_spec("invoices", timeout="2h")], dry_run=True)).changes[0]
    assert conflict.overwrites_drift and conflict.drift is not None
    assert set(conflict.drift.fields) == {"timeout"} and conflict.drift.changed_by == "bob"
    with pytest.raises(DriftConflict):
        await service.apply([_spec("invoices", timeout="2h")])

    # The files catch up with the hand-made change: nothing to overwrite, and no drift.
    result = await service.apply([_spec("invoices", timeout="1h")])
    assert result.changes[0].action == "unchanged"
    job = await service.get(JobKey(group="billing", name="invoices"))
    assert job.applied_spec == job.spec
    assert (await service.apply([_spec("invoices", timeout="2h")])).changes[0].action == "update"


async def test_prune_does_not_delete_a_job_made_outside_the_files_without_force(
    jobs: tuple[JobService, SqlStore],
) -> None:
    service, store = jobs
    await service.apply([_spec("invoices")])
    await service.apply([_spec("hotfix")], from_files=False, by="carol")
    preview = await service.apply([_spec("invoices")], prune=True, dry_run=True)
    hotfix = next(c for c in preview.changes if c.job == "billing/hotfix")
    assert hotfix.action == "delete" and hotfix.drift is not None
    assert hotfix.drift.created_outside_files and hotfix.drift.changed_by == "carol"
    with pytest.raises(DriftConflict, match="created outside files by carol"):
        await service.apply([_spec("invoices")], prune=True)
    assert {str(job.key) for job in await store.list_jobs()} == {
        "billing/invoices",
        "billing/hotfix",
    }
    await service.apply([_spec("invoices")], prune=True, force=True)
    assert [str(job.key) for job in await store.list_jobs()] == ["billing/invoices"]


async def test_a_pause_that_ends_by_itself_leaves_no_drift(
    jobs: tuple[JobService, SqlStore],
) -> None:
    service, store = jobs
    files = [_spec("invoices")]
    await service.apply(files)
    key = JobKey(group="billing", name="invoices")
    await service.set_paused(key, True, None, until=T0, by="alice")
    resumed = await store.resume_due_jobs(T0)
    assert [job.changed_by for job in resumed] == ["belfry"]
    assert (await service.apply(files, dry_run=True)).changes[0].drift is None
    assert (await service.apply(files)).changes[0].action == "unchanged"
