"""What an apply or a delete must leave true of job chains: every job a job runs after
exists, and no jobs wait for each other."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from belfry.core.chains import ChainCycle, find_cycle
from belfry.core.jobs import JobKey, JobSpec
from belfry.ports.store import Store

__all__ = ["ChainBroken", "check_chains"]


class ChainBroken(ValueError):
    """A job would run after a job that does not exist (or is being deleted)."""


async def check_chains(
    store: Store, specs: Sequence[JobSpec], deleting: Collection[str] = ()
) -> None:
    """Raise ChainBroken or ChainCycle (ValueErrors) unless the stored jobs, with ``specs``
    replacing or adding theirs and the ``deleting`` ones (``GROUP/NAME``) gone, name only
    jobs that exist in their ``after`` and wait for nothing that waits for them."""
    given = {str(spec.key): spec for spec in specs}
    chained = {str(job.key): job.spec for job in await store.chained_jobs()}
    if not chained and not any(spec.after for spec in specs):
        return  # no chains at all: the common case costs one indexed read
    edges: dict[str, list[str]] = {}
    for key, spec in (chained | given).items():
        if spec.after is not None and key not in deleting:
            edges[key] = spec.after.keys(spec.group)
    for key, upstream in sorted(edges.items()):
        for reference in upstream:
            if reference in deleting:
                raise ChainBroken(
                    f"cannot delete {reference}: {key} runs after it (change its after: first)"
                )
            if reference in given or reference in edges:
                continue
            parsed = JobKey.parse(reference)
            if await store.get_job(parsed.group, parsed.name) is None:
                raise ChainBroken(
                    f"jobs[{key}].after: no job {reference} (neither stored nor applied)"
                )
    cycle = find_cycle(edges)
    if cycle is not None:
        raise ChainCycle(
            f"jobs[{cycle[0]}].after: jobs would wait for each other (each runs after the "
            f"next): {' -> '.join(cycle)}"
        )
