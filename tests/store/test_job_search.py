"""Store contract: the jobs page's search, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

from belfry.adapters.store import SqlStore
from belfry.core.jobs import JobSpec
from belfry.core.records import JobWrite

T0 = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


async def test_search_counts_pages_and_filters(store: SqlStore) -> None:
    specs = [
        JobSpec.model_validate(
            {
                "name": f"job-{n:03d}",
                "group": "billing" if n % 2 else "reports",
                "schedule": "@daily",
                "command": "true",
                "description": f"Invoice run {n}" if n % 5 == 0 else "",
                "pool": "gpu" if n == 7 else "default",
                "paused": n == 8,
            }
        )
        for n in range(60)
    ]
    await store.apply_jobs([JobWrite(spec, T0) for spec in specs], [], T0)
    total, page = await store.search_jobs(groups=None, offset=50, limit=50)
    # billing (the 30 odd ones) first, then reports: the 21st report is job-040.
    assert total == 60 and len(page) == 10
    assert [job.key.name for job in page][:2] == ["job-040", "job-042"]
    total, found = await store.search_jobs(groups=None, words=["INVOICE"])
    assert total == 12 and all(job.spec.description for job in found)
    total, found = await store.search_jobs(groups=None, words=["invoice", "billing/"])
    assert total == 6  # the odd multiples of 5
    assert (await store.search_jobs(groups=None, words=["gpu"]))[0] == 1
    assert (await store.search_jobs(groups=None, words=["50%"]))[0] == 0  # no wildcard
    assert (await store.search_jobs(groups={"reports"}, group="billing"))[0] == 0
    assert (await store.search_jobs(groups=set()))[0] == 0
    total, found = await store.search_jobs(groups=None, paused=True)
    assert total == 1 and found[0].key.name == "job-008"
    assert await store.job_groups(None) == ["billing", "reports"]
    assert await store.job_groups({"reports", "other"}) == ["reports"]
