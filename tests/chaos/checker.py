"""Judge a chaos run against DESIGN.md's guarantees, from the ledger and the run records.

Every run of a chaos job appends one line to a ledger file when its command starts::

    JOB SCHEDULED_FOR HOST WORKER PID START ATTEMPT RUN_ID

The ledger is the ground truth of what fired; the store's run records only *explain*
occurrences that did not fire. For each job, every instant of its schedule between
``first`` and ``last`` is expected, and:

* a **duplicate** is an occurrence with two ledger lines for the same attempt, or a second
  attempt the design does not allow (guarantee 1: at most one run per occurrence; a retry
  is a new attempt, and after a lost worker only ``on_worker_lost: retry`` makes one);
* an **early** start is a ledger line that started before its nominal instant;
* a **miss** is an expected occurrence with no ledger line and no record that documents why
  (guarantee 2). Only what the design promises counts as *documented*, and only as the
  job's own policy allows it:

  - a skipped run whose reason is the job's misfire policy (``skip``: "misfire: skip
    policy"; ``run_once``: coalesced into a run of a *later* occurrence that did fire;
    ``run_all``: more than ``misfire_max`` missed). "A scheduler outage is caught up per
    the job's misfire policy": a ``run_all`` job with a large ``misfire_max`` may skip
    nothing. The chaos jobs never pause, use no calendar, no deadline and allow overlap,
    so any other skip reason (paused, calendar, deadline, overlap) is a miss;
  - a ``lost`` run (guarantee 4) of a job with ``on_worker_lost: fail``, held by a worker
    that the harness SIGKILLed around its instant (between 3 s before, when it could have
    been claimed ahead, and 10 s after). A lost run whose worker was not killed, or of a
    job that says ``retry`` (its retry must then have fired), is a miss.

Time stamps on the ledger and the instants are both this machine's clock (the cluster
runs on one host), so "early" needs no skew allowance.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "ChaosJob",
    "CheckReport",
    "Failover",
    "FailoverTiming",
    "Finding",
    "LedgerLine",
    "WorkerKill",
    "check",
    "failover_timings",
    "parse_instant",
    "parse_ledger",
    "percentiles",
    "render_timings",
]

# A lost run is blamed on a worker kill that happened this long before its instant at most
# (runs are claimed up to 1.5 s ahead) ...
LOST_CLAIMED_AHEAD = 3.0
# ... or this long after it at most (the worker was about to start it, or starting late).
LOST_STARTED_LATE = 10.0
# A run must have ended this long after its instant (lost after 15 s of silence, plus the
# reaper's pass and the worker's restart).
ENDS_WITHIN = 30.0
# A documented skip with no fault within this window before it is reported as suspicious.
FAULT_SHADOW = 30.0


@dataclass(frozen=True)
class ChaosJob:
    """A chaos job: fires every ``period`` seconds, with the policies it is judged by."""

    name: str
    # Seconds between occurrences, a divisor of 60: its instants are the epoch seconds
    # divisible by it, which the checker computes without Belfry's schedule code.
    period: int = 1
    misfire: Literal["skip", "run_once", "run_all"] = "run_once"
    misfire_max: int = 10
    on_worker_lost: Literal["fail", "retry"] = "fail"

    def __post_init__(self) -> None:
        if 60 % self.period:
            raise ValueError(f"period {self.period} does not divide a minute")

    @property
    def key(self) -> str:
        return f"default/{self.name}"

    @property
    def schedule(self) -> str:
        return "* * * * * *" if self.period == 1 else f"*/{self.period} * * * * *"

    def spec(self, command: str) -> dict[str, Any]:
        """The job as ``belfry apply`` takes it."""
        spec: dict[str, Any] = {
            "name": self.name,
            "schedule": self.schedule,
            "command": command,
            "misfire": self.misfire,
            "misfire_max": self.misfire_max,
            "on_worker_lost": self.on_worker_lost,
            # Keep every record of a 30-minute run: the checker reads them all back.
            "retention": {"keep_runs": 1_000_000},
        }
        if self.on_worker_lost == "retry":
            spec["retries"] = {"max": 1, "backoff": "1s"}  # retried soon, within the run
        return spec

    def instants(self, first: float, last: float) -> list[int]:
        """Its occurrences in ``[first, last]``, as epoch seconds."""
        start = math.ceil(first / self.period) * self.period
        return list(range(start, math.floor(last) + 1, self.period))


@dataclass(frozen=True)
class LedgerLine:
    job: str
    scheduled_for: int  # epoch seconds (the instants are whole seconds)
    host: str
    worker: str
    pid: int
    start: float
    attempt: int
    run_id: int


def parse_instant(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def parse_ledger(path: Path) -> tuple[list[LedgerLine], list[str]]:
    """The ledger's lines, and the lines that could not be read (there should be none)."""
    lines: list[LedgerLine] = []
    malformed: list[str] = []
    if not path.exists():
        return lines, malformed
    for text in path.read_text().splitlines():
        parts = text.split()
        try:
            job, scheduled, host, worker, pid, start, attempt, run_id = parts
            lines.append(
                LedgerLine(
                    job,
                    round(parse_instant(scheduled)),
                    host,
                    worker,
                    int(pid),
                    float(start),
                    int(attempt),
                    int(run_id),
                )
            )
        except ValueError:
            malformed.append(text)
    return lines, malformed


@dataclass(frozen=True)
class WorkerKill:
    worker: str
    at: float


@dataclass(frozen=True)
class Finding:
    job: str
    scheduled_for: int
    what: str

    def __str__(self) -> str:
        when = datetime.fromtimestamp(self.scheduled_for).strftime("%H:%M:%S")
        return f"{self.job} @{when} ({self.scheduled_for}): {self.what}"


@dataclass
class JobCounts:
    expected: int = 0
    fired: int = 0
    documented: int = 0
    misses: int = 0


@dataclass
class CheckReport:
    first: float
    last: float
    expected: int = 0
    fired: int = 0
    duplicates: list[Finding] = field(default_factory=list)
    early: list[Finding] = field(default_factory=list)
    misses: list[Finding] = field(default_factory=list)
    documented: list[Finding] = field(default_factory=list)
    # Documented skips with no fault shortly before them: allowed, but worth a look.
    documented_without_fault: list[Finding] = field(default_factory=list)
    retried: list[Finding] = field(default_factory=list)
    # A ledger line whose run the store does not know (or knows as never started).
    unrecorded: list[Finding] = field(default_factory=list)
    # A run still waiting or active long after its instant (guarantee 4: every run ends).
    unended: list[Finding] = field(default_factory=list)
    # Runs that ended badly (killed, lost, failed, ...) with no worker kill to blame: not a
    # broken guarantee by itself (a worker cut off from every server kills its runs by
    # design), but a sign the cluster hurt runs it had no reason to.
    collateral: list[Finding] = field(default_factory=list)
    # A ledger line for an instant off the job's schedule.
    unexpected: list[Finding] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    per_job: dict[str, JobCounts] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (
            self.duplicates
            or self.early
            or self.misses
            or self.unrecorded
            or self.unended
            or self.unexpected
            or self.malformed
        )

    def render(self, limit: int = 40, notes: int = 10) -> str:
        span = self.last - self.first
        out = [
            f"window: {_clock(self.first)} .. {_clock(self.last)} ({span:.0f} s)",
            f"occurrences expected {self.expected}, fired {self.fired}, "
            f"documented {len(self.documented)}, retried after worker loss {len(self.retried)}",
            f"duplicates {len(self.duplicates)}, misses {len(self.misses)}, "
            f"early {len(self.early)}, unrecorded {len(self.unrecorded)}, "
            f"unended {len(self.unended)}, collateral {len(self.collateral)}, "
            f"off-schedule {len(self.unexpected)}, malformed ledger lines {len(self.malformed)}",
        ]
        for job, counts in sorted(self.per_job.items()):
            out.append(
                f"  {job:<22} expected {counts.expected:>5}  fired {counts.fired:>5}  "
                f"documented {counts.documented:>3}  misses {counts.misses:>3}"
            )
        # Violations first, listed up to ``limit``; then what is allowed, up to ``notes``.
        sections: list[tuple[str, Sequence[object], int]] = [
            ("DUPLICATES", self.duplicates, limit),
            ("MISSES", self.misses, limit),
            ("EARLY STARTS", self.early, limit),
            ("UNRECORDED RUNS", self.unrecorded, limit),
            ("UNENDED RUNS", self.unended, limit),
            ("OFF-SCHEDULE RUNS", self.unexpected, limit),
            ("MALFORMED LEDGER LINES", self.malformed, limit),
            ("documented (not fired, with a record the design allows)", self.documented, notes),
            ("documented but no fault in the 30 s before", self.documented_without_fault, notes),
            ("retried after a lost worker (on_worker_lost: retry)", self.retried, notes),
            ("collateral: ended badly with no worker kill to blame", self.collateral, notes),
        ]
        for title, items, most in sections:
            if items:
                out.append(f"{title}:")
                out += [f"  {item}" for item in items[:most]]
                if len(items) > most:
                    out.append(f"  ... and {len(items) - most} more")
        return "\n".join(out)


def check(
    jobs: Sequence[ChaosJob],
    ledger: Sequence[LedgerLine],
    records: dict[str, list[dict[str, Any]]],
    *,
    first: float,
    last: float,
    worker_kills: Sequence[WorkerKill] = (),
    fault_times: Sequence[float] = (),
    malformed: Sequence[str] = (),
) -> CheckReport:
    """Judge the run: ``records`` are the store's runs per job key (GET /api/v1/runs)."""
    report = CheckReport(first=first, last=last, malformed=list(malformed))
    known = {job.key: job for job in jobs}
    for line in ledger:
        if line.job not in known:
            report.unexpected.append(
                Finding(line.job, line.scheduled_for, f"not a chaos job (run {line.run_id})")
            )
    for job in jobs:
        counts = report.per_job.setdefault(job.key, JobCounts())
        lines = [line for line in ledger if line.job == job.key]
        job_records = records.get(job.key, [])
        _check_job(job, lines, job_records, report, counts, worker_kills, fault_times)
        report.expected += counts.expected
        report.fired += counts.fired
    return report


def _check_job(
    job: ChaosJob,
    lines: list[LedgerLine],
    records: list[dict[str, Any]],
    report: CheckReport,
    counts: JobCounts,
    worker_kills: Sequence[WorkerKill],
    fault_times: Sequence[float],
) -> None:
    fired: dict[int, list[LedgerLine]] = defaultdict(list)
    for line in lines:
        fired[line.scheduled_for].append(line)
    by_instant: dict[int, list[dict[str, Any]]] = defaultdict(list)
    by_id: dict[int, dict[str, Any]] = {}
    for record in records:
        by_instant[round(parse_instant(record["scheduled_for"]))].append(record)
        by_id[record["id"]] = record

    for instant, ran in sorted(fired.items()):
        if instant % job.period:
            report.unexpected.append(Finding(job.key, instant, "not an instant of its schedule"))
        _check_attempts(job, instant, ran, by_instant[instant], report)
        for line in ran:
            if line.start < instant:
                report.early.append(
                    Finding(
                        job.key,
                        instant,
                        f"attempt {line.attempt} started {instant - line.start:.3f} s early "
                        f"on {line.worker} (run {line.run_id})",
                    )
                )
            recorded = by_id.get(line.run_id)
            if recorded is None or recorded["state"] in ("scheduled", "skipped"):
                state = "no record" if recorded is None else f"record says {recorded['state']}"
                report.unrecorded.append(
                    Finding(job.key, instant, f"run {line.run_id} ran on {line.worker}: {state}")
                )

    for record in records:
        instant = round(parse_instant(record["scheduled_for"]))
        state = record["state"]
        if state in ("scheduled", "claimed", "running") and instant < report.last - ENDS_WITHIN:
            report.unended.append(
                Finding(job.key, instant, f"run {record['id']} still {state} at the end")
            )
        elif state not in ("scheduled", "claimed", "running", "succeeded", "skipped") and not (
            _killed_worker(record, instant, worker_kills)
        ):
            report.collateral.append(
                Finding(job.key, instant, f"run {record['id']} {state}: {record['reason']}")
            )

    fired_instants = set(fired)
    for instant in job.instants(report.first, report.last):
        counts.expected += 1
        if instant in fired_instants:
            counts.fired += 1
            continue
        explained = [
            why
            for record in by_instant.get(instant, [])
            if (why := _documented(job, instant, record, fired_instants, worker_kills))
        ]
        if explained:
            counts.documented += 1
            finding = Finding(job.key, instant, explained[0])
            report.documented.append(finding)
            if explained[0].startswith("skipped") and not any(
                instant - FAULT_SHADOW <= at <= instant for at in fault_times
            ):
                report.documented_without_fault.append(finding)
        else:
            counts.misses += 1
            report.misses.append(Finding(job.key, instant, _describe(by_instant.get(instant))))


def _check_attempts(
    job: ChaosJob,
    instant: int,
    ran: list[LedgerLine],
    records: list[dict[str, Any]],
    report: CheckReport,
) -> None:
    """At most one line per attempt; a later attempt only where the design makes one."""
    per_attempt = Counter(line.attempt for line in ran)
    for attempt, times in sorted(per_attempt.items()):
        if times > 1:
            who = ", ".join(f"run {line.run_id} on {line.worker}" for line in ran)
            report.duplicates.append(
                Finding(job.key, instant, f"attempt {attempt} ran {times} times: {who}")
            )
        if attempt == 1:
            continue
        previous = [record for record in records if record["attempt"] == attempt - 1]
        allowed = job.on_worker_lost == "retry" and any(
            record["state"] == "lost" for record in previous
        )
        states = ", ".join(record["state"] for record in previous) or "no record"
        if allowed:
            report.retried.append(
                Finding(job.key, instant, f"attempt {attempt} after attempt {attempt - 1} lost")
            )
        else:
            report.duplicates.append(
                Finding(
                    job.key,
                    instant,
                    f"attempt {attempt} ran, but attempt {attempt - 1} ended: {states}",
                )
            )


_COALESCED = re.compile(r"misfire: coalesced into the run for (\S+)")


def _documented(
    job: ChaosJob,
    instant: int,
    record: dict[str, Any],
    fired: set[int],
    worker_kills: Sequence[WorkerKill],
) -> str | None:
    """Why this record documents the occurrence not firing, if the design allows it."""
    state, reason = record["state"], record["reason"] or ""
    if state == "skipped":
        if job.misfire == "skip" and reason == "misfire: skip policy":
            return f"skipped: {reason}"
        if job.misfire == "run_all" and reason == (
            f"misfire: more than {job.misfire_max} missed occurrences"
        ):
            return f"skipped: {reason}"
        if job.misfire == "run_once":
            if reason == "misfire: coalesced into the run for a later missed occurrence":
                if any(later > instant for later in fired):
                    return f"skipped: {reason}"
            elif match := _COALESCED.fullmatch(reason):
                into = round(parse_instant(match.group(1)))
                if into > instant and into in fired:
                    return f"skipped: {reason}"
        return None
    if state == "lost" and job.on_worker_lost == "fail":
        kill = _killed_worker(record, instant, worker_kills)
        if kill is not None:
            return f"lost: worker {kill.worker} killed at {_clock(kill.at)} ({reason})"
    return None


def _killed_worker(
    record: dict[str, Any], instant: int, worker_kills: Sequence[WorkerKill]
) -> WorkerKill | None:
    """The harness's kill of the worker that held this run, around its instant."""
    for kill in worker_kills:
        if (
            kill.worker == record["worker"]
            and instant - LOST_CLAIMED_AHEAD <= kill.at <= instant + LOST_STARTED_LATE
        ):
            return kill
    return None


def _describe(records: list[dict[str, Any]] | None) -> str:
    if not records:
        return "no ledger line and no run record"
    return "no ledger line; records: " + "; ".join(
        f"run {r['id']} attempt {r['attempt']} {r['state']}"
        + (f" on {r['worker']}" if r["worker"] else "")
        + (f" ({r['reason']})" if r["reason"] else "")
        for r in records
    )


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%H:%M:%S.%f")[:-3]


# -- failover timings -----------------------------------------------------------------------


@dataclass(frozen=True)
class Failover:
    """The leader went away (``kind``) at ``at``; another server was seen leading
    ``new_leader_after`` seconds later (None: not within the harness's patience)."""

    kind: str
    at: float
    old_leader: str
    new_leader: str | None
    new_leader_after: float | None


@dataclass(frozen=True)
class FailoverTiming:
    kind: str
    new_leader_after: float | None
    # The first ledger start of an occurrence due after the fault, minus the fault time.
    firing_resumed_after: float | None
    # The worst start - scheduled_for among the occurrences due in the window after it.
    worst_lateness: float | None
    # Occurrences due in that window that never fired (documented or not).
    unfired: int


def failover_timings(
    failovers: Iterable[Failover],
    jobs: Sequence[ChaosJob],
    ledger: Sequence[LedgerLine],
    *,
    window: float = 10.0,
    until: float = math.inf,
) -> list[FailoverTiming]:
    """Each failover's timings from the ledger; occurrences after ``until`` (the end of
    the checked window) are left out."""
    first_start: dict[tuple[str, int], float] = {}
    for line in ledger:
        key = (line.job, line.scheduled_for)
        first_start[key] = min(line.start, first_start.get(key, math.inf))
    timings = []
    for failover in failovers:
        after = [start for (_, due), start in first_start.items() if due > failover.at]
        resumed = min(after) - failover.at if after else None
        lateness: list[float] = []
        unfired = 0
        for job in jobs:
            for instant in job.instants(failover.at, min(failover.at + window, until)):
                start = first_start.get((job.key, instant))
                if start is None:
                    unfired += 1
                else:
                    lateness.append(start - instant)
        timings.append(
            FailoverTiming(
                failover.kind,
                failover.new_leader_after,
                resumed,
                max(lateness) if lateness else None,
                unfired,
            )
        )
    return timings


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99 (nearest rank) and max of ``values`` (which must not be empty)."""
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {"p50": rank(0.5), "p90": rank(0.9), "p99": rank(0.99), "max": ordered[-1]}


def render_timings(timings: Sequence[FailoverTiming], window: float = 10.0) -> str:
    """A table per fault kind (and for all together) of the three failover measures."""
    out = [
        f"failover, seconds (n = faults; lateness: worst start - scheduled_for over "
        f"the {window:g} s after the fault)"
    ]
    out.append(
        f"  {'kind':<16} {'measure':<16} {'n':>3} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7}"
    )
    kinds = sorted({timing.kind for timing in timings})
    groups = [(kind, [t for t in timings if t.kind == kind]) for kind in kinds]
    if len(kinds) > 1:
        groups.append(("all", list(timings)))
    for kind, group in groups:
        measures = {
            "new leader seen": [t.new_leader_after for t in group],
            "firing resumed": [t.firing_resumed_after for t in group],
            "worst lateness": [t.worst_lateness for t in group],
        }
        for name, raw in measures.items():
            values = [value for value in raw if value is not None]
            missing = len(raw) - len(values)
            if not values:
                out.append(f"  {kind:<16} {name:<16} {0:>3}  (none measured)")
                continue
            p = percentiles(values)
            row = (
                f"  {kind:<16} {name:<16} {len(values):>3} {p['p50']:>7.2f} {p['p90']:>7.2f} "
                f"{p['p99']:>7.2f} {p['max']:>7.2f}"
            )
            out.append(row + (f"   ({missing} never)" if missing else ""))
    unfired = sum(timing.unfired for timing in timings)
    out.append(
        f"  occurrences due within {window:g} s of a leader fault that never fired: {unfired}"
    )
    return "\n".join(out)
