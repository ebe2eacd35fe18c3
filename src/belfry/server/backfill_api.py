"""The backfill API: ``POST /api/v1/jobs/{group}/{name}/backfill`` plans (dry run) or
runs the occurrences of a past range of a job's schedule (``belfry.services.backfill``).

Operators of the job's group may backfill; each real backfill is audited.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field

from belfry.core.permissions import Permission, Principal
from belfry.server.dependencies import NodeDep, UserDep, address_of, require
from belfry.server.node import Node
from belfry.server.operations import find_job
from belfry.server.schemas import ERROR_RESPONSES, RunOut
from belfry.services.backfill import (
    BackfillError,
    BackfillOverlap,
    BackfillPlan,
    BackfillRequest,
    BackfillService,
    OccurrencePlan,
)
from belfry.services.signals import Topic

__all__ = ["BackfillIn", "BackfillOut", "OccurrenceOut", "backfill_job", "backfill_router"]


class BackfillIn(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    start: datetime = Field(alias="from", description="First instant of the range (RFC 3339).")
    end: datetime = Field(alias="to", description="Last instant of the range, included.")
    dry_run: bool = False
    overlap: BackfillOverlap = BackfillOverlap.FORBID
    max_parallel: int = Field(1, ge=1, le=1000)
    rate: float | None = Field(None, gt=0, le=60_000, description="Runs started per minute.")


class OccurrenceOut(BaseModel):
    scheduled_for: datetime
    status: str  # run | already ran | skipped
    note: str | None
    attempt: int | None
    run_id: int | None

    @classmethod
    def of(cls, item: OccurrencePlan) -> OccurrenceOut:
        return cls(
            scheduled_for=item.scheduled_for,
            status=item.status.value,
            note=item.note,
            attempt=item.attempt,
            run_id=item.run_id,
        )


class BackfillOut(BaseModel):
    job: str
    dry_run: bool
    occurrences: list[OccurrenceOut]
    # The runs made (none for a dry run).
    runs: list[RunOut]

    @classmethod
    def of(cls, plan: BackfillPlan) -> BackfillOut:
        return cls(
            job=plan.job,
            dry_run=plan.dry_run,
            occurrences=[OccurrenceOut.of(item) for item in plan.occurrences],
            runs=[RunOut.of(run) for run in plan.runs],
        )


async def backfill_job(
    node: Node, caller: Principal, address: str | None, group: str, name: str, body: BackfillIn
) -> BackfillPlan:
    """Plan or run the backfill (403 without operate on the group, 404, 422 for a bad
    range); a real one is audited."""
    require(caller, Permission.OPERATE, group)
    job = await find_job(node, caller, group, name)
    service = BackfillService(
        node.store, node.clock, on_runs_created=partial(node.runs.signals.announce, Topic.RUNS)
    )
    request = BackfillRequest(
        start=body.start,
        end=body.end,
        dry_run=body.dry_run,
        overlap=body.overlap,
        max_parallel=body.max_parallel,
        rate=body.rate,
    )
    try:
        plan = await service.backfill(job, request)
    except BackfillError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(error)) from None
    if not plan.dry_run:
        after: dict[str, Any] = body.model_dump(mode="json", by_alias=True, exclude={"dry_run"})
        # The ids only as a range: a backfill may make thousands of runs.
        ids = [run.id for run in plan.runs]
        after["runs"] = {
            "count": len(ids),
            "first": min(ids, default=None),
            "last": max(ids, default=None),
        }
        await node.audit.record(
            caller, "job.backfill", address=address, group=group, target=str(job.key), after=after
        )
    return plan


def backfill_router() -> APIRouter:
    api = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)

    @api.post("/jobs/{group}/{name}/backfill", response_model=BackfillOut)
    async def backfill(
        node: NodeDep, caller: UserDep, request: Request, group: str, name: str, body: BackfillIn
    ) -> BackfillOut:
        """The occurrences of the job's schedule in ``[from, to]`` (past only, at most
        10,000) and what becomes of each: ``run``, ``already ran`` (never run twice) or
        ``skipped`` (by a calendar); unless ``dry_run``, the runs are made (trigger
        ``backfill``), paced by ``rate`` and, when claimed, by ``overlap`` and
        ``max_parallel``."""
        plan = await backfill_job(node, caller, address_of(request), group, name, body)
        return BackfillOut.of(plan)

    return api
