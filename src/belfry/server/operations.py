"""What people do to jobs and runs, checked and audited: one implementation for the API and
the web UI.

Each action checks the caller's role on the group it touches (403), finds its target
(404), acts through the services and records who did it, from where, in the audit log.
"""

from __future__ import annotations

from fastapi import HTTPException, status

from belfry.core.jobs import JobKey
from belfry.core.permissions import Permission, Principal
from belfry.core.records import JobRecord, RunRecord
from belfry.core.states import RunState, is_final
from belfry.server.dependencies import require
from belfry.server.node import Node
from belfry.services.jobs import UnknownJob

__all__ = ["find_job", "find_run", "kill_run", "set_paused", "trigger_job"]


async def find_job(node: Node, caller: Principal, group: str, name: str) -> JobRecord:
    """The job, if ``caller`` may read its group (403) and it exists (404)."""
    require(caller, Permission.READ, group)
    try:
        return await node.jobs.get(JobKey(group=group, name=name))
    except UnknownJob as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None


async def find_run(
    node: Node, caller: Principal, run_id: int, permission: Permission = Permission.READ
) -> RunRecord:
    run = await node.store.get_run(run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no such run: {run_id}")
    require(caller, permission, run.job.split("/", 1)[0])
    return run


async def trigger_job(
    node: Node, caller: Principal, address: str | None, group: str, name: str
) -> list[RunRecord]:
    """Run the job now: its runs (one per worker for ``target: all``)."""
    require(caller, Permission.OPERATE, group)
    job = await find_job(node, caller, group, name)
    made = await node.runs.trigger(job)
    if not made:
        # Another trigger of this job took the very same microsecond.
        raise HTTPException(status.HTTP_409_CONFLICT, "triggered twice at once; try again")
    await node.audit.record(
        caller,
        "job.run",
        address=address,
        group=group,
        target=str(job.key),
        after={"runs": [run.id for run in made]},
    )
    return made


async def set_paused(
    node: Node,
    caller: Principal,
    address: str | None,
    group: str,
    name: str,
    paused: bool,
    note: str | None = None,
) -> JobRecord:
    """Pause (with an optional note) or resume the job."""
    require(caller, Permission.OPERATE, group)
    try:
        job = await node.jobs.set_paused(JobKey(group=group, name=name), paused, note)
    except UnknownJob as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    await node.audit.record(
        caller,
        "job.pause" if paused else "job.resume",
        address=address,
        group=group,
        target=f"{group}/{name}",
        after={"note": note} if paused else None,
    )
    return job


async def kill_run(node: Node, caller: Principal, address: str | None, run_id: int) -> RunRecord:
    """Kill the run's whole process tree (or cancel it before it starts)."""
    before = await find_run(node, caller, run_id, Permission.OPERATE)
    run = await node.runs.kill(run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no such run: {run_id}")
    if is_final(run.state) and run.state is not RunState.KILLED:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"run {run_id} already ended: {run.state.value}"
        )
    await node.audit.record(
        caller,
        "run.kill",
        address=address,
        group=before.job.split("/", 1)[0],
        target=f"run {run_id} ({before.job})",
        before={"state": before.state.value},
    )
    return run
