"""What people do to jobs and runs, checked and audited: one implementation for the API and
the web UI.

Each action checks the caller's role on the group it touches (403), finds its target
(404), acts through the services and records who did it, from where, in the audit log.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from fastapi import HTTPException, status

from belfry import __version__
from belfry.core.deliveries import DeliveryRecord
from belfry.core.jobs import JobKey
from belfry.core.maintenance import EVERYTHING, MaintenanceWindow
from belfry.core.permissions import Permission, Principal
from belfry.core.records import AuditEntry, JobRecord, RunRecord, WorkerRecord
from belfry.core.states import ACTIVE_STATES, RunState, is_final
from belfry.ports.maintenance import EndedMaintenance
from belfry.server.dependencies import require, require_global_admin
from belfry.server.health import readiness
from belfry.server.node import Node
from belfry.server.schemas import ApplyRequest, ClusterOut, HealthOut, NodeOut, WorkerOut
from belfry.services.channels import UnknownChannel
from belfry.services.database_time import MAX_CLOCK_OFFSET
from belfry.services.jobs import ApplyResult, DriftConflict, UnknownJob
from belfry.services.workers import UnknownWorker

__all__ = [
    "apply_changes",
    "cluster_overview",
    "end_maintenance",
    "find_job",
    "find_run",
    "kill_run",
    "require_same_name",
    "send_channel_test",
    "set_paused",
    "set_worker_drain",
    "start_maintenance",
    "trigger_job",
    "visible_deliveries",
]


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
    until: datetime | None = None,
) -> JobRecord:
    """Pause (with an optional note, and until ``until`` when given: the leader resumes
    the job then) or resume the job."""
    require(caller, Permission.OPERATE, group)
    if paused and until is not None and until <= node.clock.now():
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "until: must be in the future")
    try:
        job = await node.jobs.set_paused(
            JobKey(group=group, name=name), paused, note, until, by=caller.name
        )
    except UnknownJob as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    await node.audit.record(
        caller,
        "job.pause" if paused else "job.resume",
        address=address,
        group=group,
        target=f"{group}/{name}",
        after={"note": note, "until": until.isoformat() if until else None} if paused else None,
    )
    return job


def _may_maintain(caller: Principal, scope: str) -> None:
    # Everything needs a global admin; a group, an admin of the group.
    if scope == EVERYTHING:
        require_global_admin(caller)
    else:
        require(caller, Permission.ADMINISTER, scope)


async def start_maintenance(
    node: Node, caller: Principal, address: str | None, scope: str, note: str | None
) -> MaintenanceWindow:
    """Put everything (``*``) or a group in maintenance, or change the note of its window."""
    _may_maintain(caller, scope)
    before, after = await node.maintenance.start(scope, note, caller.name)
    await node.audit.record(
        caller,
        "maintenance.on",
        address=address,
        group=None if scope == EVERYTHING else scope,
        target=scope,
        before={"note": before.note} if before else None,
        after={"note": after.note},
    )
    return after


async def end_maintenance(
    node: Node, caller: Principal, address: str | None, scope: str
) -> EndedMaintenance:
    """End the window of everything (``*``) or of a group (404 when there is none)."""
    _may_maintain(caller, scope)
    ended = await node.maintenance.end(scope)
    if ended is None:
        shown = "everything" if scope == EVERYTHING else f"group {scope!r}"
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{shown} is not in maintenance")
    await node.audit.record(
        caller,
        "maintenance.off",
        address=address,
        group=None if scope == EVERYTHING else scope,
        target=scope,
        before={"note": ended.window.note, "since": ended.window.started_at.isoformat()},
        after={"deferred_runs": [run.id for run in ended.runs]},
    )
    return ended


async def set_worker_drain(
    node: Node, caller: Principal, address: str | None, name: str, drain: bool
) -> WorkerRecord:
    """Drain a worker (it finishes its runs and takes nothing new) or undrain it."""
    require_global_admin(caller)  # workers serve every group's jobs
    try:
        worker = await node.workers.set_drain(name, drain)
    except UnknownWorker as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    await node.audit.record(
        caller, "worker.drain" if drain else "worker.undrain", address=address, target=name
    )
    return worker


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


def require_same_name(in_body: str, in_path: str) -> None:
    """422 unless a PUT's body names what its path names."""
    if in_body != in_path:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            f"name: the body names {in_body!r} but the path {in_path!r}",
        )


async def apply_changes(
    node: Node, caller: Principal, address: str | None, request: ApplyRequest
) -> ApplyResult:
    """Make the jobs of the groups in the request match it (editor on each group; 403);
    calendars and channels it would change need a global admin, group settings an admin
    of the group. Invalid input (422) applies nothing; a real apply is audited, one entry
    per job, calendar, channel or group it changed."""
    for group in sorted({spec.group for spec in request.jobs}):
        require(caller, Permission.EDIT, group)
    shared = request.calendars or request.channels or request.groups
    try:
        if shared and not caller.global_admin:
            _check_shared_changes(caller, await _apply(node, request, dry_run=True))
        result = await _apply(node, request, dry_run=request.dry_run, by=caller.name)
    except DriftConflict as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(error)) from None
    if not result.dry_run:
        await node.audit.record_many(_apply_entries(caller, address, request, result))
    return result


async def _apply(
    node: Node, request: ApplyRequest, *, dry_run: bool, by: str | None = None
) -> ApplyResult:
    return await node.jobs.apply(
        request.jobs,
        calendars=request.calendars,
        channels=request.channels,
        groups=request.groups,
        prune=request.prune,
        dry_run=dry_run,
        from_files=request.source == "files",
        force=request.force,
        by=by,
    )


def _check_shared_changes(caller: Principal, preview: ApplyResult) -> None:
    """403 unless ``caller`` may make the changes of ``preview`` beyond jobs: calendars
    and channels are shared by all groups (global admins only); a group's settings need
    admin on that group."""
    shared = [
        *(f"calendar {c.job}" for c in preview.calendar_changes if c.action != "unchanged"),
        *(f"channel {c.name}" for c in preview.channel_changes if c.action != "unchanged"),
    ]
    if shared:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"{caller.name} may not change {', '.join(shared)}: calendars and channels are "
            "shared by all groups (global admins only)",
        )
    for change in preview.group_changes:
        if change.action != "unchanged":
            require(caller, Permission.ADMINISTER, change.name)


def _apply_entries(
    caller: Principal, address: str | None, request: ApplyRequest, result: ApplyResult
) -> list[AuditEntry]:
    """One audit entry per job, calendar, channel or group the apply changed, with before
    and after (channels without their credentials)."""
    specs = {str(spec.key): spec for spec in request.jobs}
    entries = []
    for change in result.changes:
        if change.action == "unchanged":
            continue
        before: Any = None
        after: Any = None
        if change.action == "create":
            after = specs[change.job].to_document()
        elif change.action == "update":
            before = {key: pair[0] for key, pair in change.fields.items()}
            after = {key: pair[1] for key, pair in change.fields.items()}
        entries.append(
            AuditEntry(
                actor=caller.name,
                action=f"job.{change.action}",
                address=address,
                group=change.job.split("/", 1)[0],
                target=change.job,
                before=before,
                after=after,
            )
        )
    calendars = {spec.name: spec for spec in request.calendars}
    for change in result.calendar_changes:
        if change.action != "unchanged":
            spec = calendars.get(change.job)
            entries.append(
                AuditEntry(
                    actor=caller.name,
                    action=f"calendar.{change.action}",
                    address=address,
                    target=change.job,
                    after=spec.model_dump(mode="json", exclude_defaults=True) if spec else None,
                )
            )
    for what, named in (("channel", result.channel_changes), ("group", result.group_changes)):
        entries += [
            AuditEntry(
                actor=caller.name,
                action=f"{what}.{change.action}",
                address=address,
                group=change.name if what == "group" else None,
                target=change.name,
                before=change.before,
                after=change.after,
            )
            for change in named
            if change.action != "unchanged"
        ]
    return entries


async def cluster_overview(node: Node) -> ClusterOut:
    """Server nodes (leader, epoch, lease, clock offsets), workers (pools, tags,
    capacity, state, load) and the readiness of this server."""
    workers = await node.store.list_workers()
    active = await node.store.runs_in_states(sorted(ACTIVE_STATES))
    load = Counter(run.worker for run in active)
    if not node.shared_database:  # SQLite: this server is the only one, and leads
        nodes = [NodeOut(name=node.name, version=__version__, leader=True)]
    else:
        lease = await node.store.read_leadership(node.clock.now())
        nodes = [
            NodeOut(
                name=known.name,
                version=known.version,
                leader=lease is not None and lease.valid and lease.holder == known.name,
                epoch=lease.epoch if lease and lease.holder == known.name else None,
                lease_expires=lease.expires_at if lease and lease.holder == known.name else None,
                last_seen=known.last_seen,
                clock_offset=known.clock_offset,
                refuses_leadership=known.clock_offset is not None
                and abs(known.clock_offset) > MAX_CLOCK_OFFSET,
            )
            for known in await node.store.list_nodes()
        ]
    ready = await readiness(node)
    return ClusterOut(
        nodes=nodes,
        workers=[WorkerOut.of(worker, load[worker.name]) for worker in workers],
        health=HealthOut(node=node.name, **ready.to_json()),
    )


async def send_channel_test(
    node: Node, caller: Principal, address: str | None, name: str
) -> DeliveryRecord:
    """Send a test alert through the channel now (global admins: 403; 404 if unknown);
    the delivery says how it went."""
    require_global_admin(caller)
    try:
        await node.jobs.channels.get_channel(name)
    except UnknownChannel as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    delivery = await node.notifier.send_test(name)
    await node.audit.record(caller, "channel.test", address=address, target=name)
    return delivery


async def visible_deliveries(
    node: Node,
    caller: Principal,
    *,
    channel: str | None = None,
    run: int | None = None,
    job: str | None = None,
    limit: int = 50,
) -> list[DeliveryRecord]:
    """Alerts sent, waiting or given up, newest first, about jobs of the groups
    ``caller`` may read; ``job`` (group/name) needs read on its group (422 if malformed,
    403)."""
    if job is not None:
        try:
            key = JobKey.parse(job)
        except ValueError as error:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(error)) from None
        require(caller, Permission.READ, key.group)
        job = str(key)
    return await node.store.list_deliveries(
        channel=channel, run_id=run, job=job, limit=limit, groups=caller.readable_groups()
    )
