"""Prometheus metrics of one server process (``GET /metrics``).

Two kinds of numbers, kept apart on purpose:

- Events this process recorded (runs it saw start, end or get skipped, notifications it
  sent, when its scheduler last fired) are counters and a histogram in the process. Each
  state change is counted by the one server whose compare-and-set applied it, so summing
  over the replicas (``sum by (state) (rate(...))``) counts every run once.
- Facts that are the same whichever server answers (the queue, the runs in flight, the
  workers, the leader, each job's last success) are read from the store when scraped.
  Reading them is async and a prometheus-client collector is not, so ``exposition`` reads
  the store first and then renders everything in one pass.

Each ``Metrics`` owns its registry (never the global default one): tests run many servers
in one process, and two of them must not count into the same numbers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from belfry.core.records import NewRun, RunRecord
from belfry.core.states import FINAL_STATES, RunState
from belfry.ports.store import Store

__all__ = [
    "CONTENT_TYPE",
    "NOTIFICATION_OUTCOMES",
    "LeaderView",
    "Metrics",
    "skip_kind",
]

# The text format ``generate_latest`` writes (prometheus-client's own constant for it
# moved between releases).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NOTIFICATION_OUTCOMES = ("sent", "failed")
_ENDINGS = sorted(state.value for state in FINAL_STATES - {RunState.SKIPPED})
# The reasons the scheduler and the run service skip for (core.policies, core.calendars,
# services.placement): present from the start at 0, so rate() sees the first one.
_KNOWN_SKIPS = ("paused", "overlap", "misfire", "deadline", "calendar", "target")
_WORKER_STATES = ("active", "draining", "lost")
_KIND = re.compile(r"[a-z][a-z0-9_-]{0,31}")
# From a run started on time (milliseconds) to one that waited in a queue or for a worker.
_LATENESS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


def skip_kind(reason: str | None) -> str:
    """A skip's reason as a label with few values: its first word, before any ``:`` or
    space (``calendar:holidays`` -> ``calendar``, ``deadline passed: ...`` -> ``deadline``).
    The rest of a reason names instants, calendars and limits: as a label it would make a
    new series for every one of them."""
    head = re.split(r"[:\s]", (reason or "").strip().lower(), maxsplit=1)[0]
    return head if _KIND.fullmatch(head) else "other"


@dataclass(frozen=True)
class LeaderView:
    """Who leads the scheduler, as the server answering the scrape sees it."""

    node: str | None  # the leader's name; None while no lease is valid
    epoch: int | None  # its fencing epoch (None on SQLite, which has no election)
    leading: bool  # the server answering is the leader


@dataclass(frozen=True)
class _StoreFacts:
    """What the store says at the scrape, rendered as gauges."""

    live: dict[RunState, int]
    workers: dict[str, int]
    last_successes: dict[str, datetime]
    leader: LeaderView

    def families(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "belfry_queue_depth",
            "Runs due to start now that no worker has taken yet.",
            value=self.live.get(RunState.SCHEDULED, 0),
        )
        in_flight = GaugeMetricFamily(
            "belfry_runs_in_flight", "Runs held by workers, by state.", labels=["state"]
        )
        for held in (RunState.CLAIMED, RunState.RUNNING):
            in_flight.add_metric([held.value], self.live.get(held, 0))
        yield in_flight
        workers = GaugeMetricFamily(
            "belfry_workers", "Workers known to the cluster, by state.", labels=["state"]
        )
        for state in sorted({*_WORKER_STATES, *self.workers}):
            workers.add_metric([state], self.workers.get(state, 0))
        yield workers
        leader = GaugeMetricFamily(
            "belfry_leader", "1 for the server leading the scheduler.", labels=["node"]
        )
        if self.leader.node is not None:
            leader.add_metric([self.leader.node], 1)
        yield leader
        if self.leader.epoch is not None:
            yield GaugeMetricFamily(
                "belfry_leader_epoch",
                "The leader's fencing epoch (raised at every change of leader).",
                value=self.leader.epoch,
            )
        yield GaugeMetricFamily(
            "belfry_is_leader",
            "1 if the server answering leads the scheduler, else 0.",
            value=1 if self.leader.leading else 0,
        )
        success = GaugeMetricFamily(
            "belfry_job_last_success_timestamp_seconds",
            "When the job's latest succeeded run still kept finished (Unix time).",
            labels=["job"],
        )
        for job, finished in sorted(self.last_successes.items()):
            success.add_metric([job], finished.timestamp())
        yield success


class _SchedulerClock(Collector):
    """``belfry_scheduler_last_fire_timestamp_seconds``, only once this server's scheduler
    has fired: a server that never led says nothing (rather than 1970), so
    ``max(...)`` over the replicas is the cluster's last fire."""

    def __init__(self) -> None:
        self.last_fire: float | None = None

    def collect(self) -> Iterator[Metric]:
        if self.last_fire is not None:
            yield GaugeMetricFamily(
                "belfry_scheduler_last_fire_timestamp_seconds",
                "When this server's scheduler last created runs to start (Unix time).",
                value=self.last_fire,
            )


class _Scrape(Collector):
    """One scrape: this process's metrics, then the store's facts."""

    def __init__(self, registry: CollectorRegistry, facts: _StoreFacts) -> None:
        self._registry = registry
        self._facts = facts

    def collect(self) -> Iterator[Metric]:
        yield from self._registry.collect()
        yield from self._facts.families()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._schedule_to_start = Histogram(
            "belfry_schedule_to_start_seconds",
            "From when a run was due (its instant, moved by jitter, a calendar deferral or "
            "a retry's backoff) to its start being recorded.",
            buckets=_LATENESS_BUCKETS,
            registry=self.registry,
        )
        self._finished = Counter(
            "belfry_runs_finished",
            "Runs that ended, by final state.",
            ["state"],
            registry=self.registry,
        )
        self._skipped = Counter(
            "belfry_runs_skipped",
            "Occurrences and runs skipped, by the first word of the reason.",
            ["reason"],
            registry=self.registry,
        )
        self._notifications = Counter(
            "belfry_notifications",
            "Alert notifications delivered (sent) or given up on (failed), by channel.",
            ["channel", "outcome"],
            registry=self.registry,
        )
        for state in _ENDINGS:
            self._finished.labels(state=state)
        for kind in _KNOWN_SKIPS:
            self._skipped.labels(reason=kind)
        self._scheduler = _SchedulerClock()
        self.registry.register(self._scheduler)

    # -- what this process records ----------------------------------------------------------
    def recorded(self, runs: Iterable[RunRecord]) -> None:
        """Runs that have just changed state here (as the store returned them): a start
        is timed against when the run was due, an ending or a skip counted."""
        for run in runs:
            if run.state is RunState.RUNNING and run.started_at is not None:
                late = (run.started_at - run.not_before).total_seconds()
                # The worker may start a run a hair before its instant on its own clock.
                self._schedule_to_start.observe(max(late, 0.0))
            elif run.state is RunState.SKIPPED:
                self.skipped(run.reason)
            elif run.state in FINAL_STATES:
                self._finished.labels(state=run.state.value).inc()

    def planned(self, runs: Iterable[NewRun], now: datetime) -> None:
        """Runs the scheduler has just created: skips are counted, and a run to start
        marks the scheduler's last fire."""
        fired = False
        for run in runs:
            if run.state is RunState.SKIPPED:
                self.skipped(run.reason)
            else:
                fired = True
        if fired:
            self._scheduler.last_fire = now.timestamp()

    def skipped(self, reason: str | None) -> None:
        self._skipped.labels(reason=skip_kind(reason)).inc()

    def notification(self, channel: str, outcome: str) -> None:
        """An alert to ``channel`` was delivered (``sent``) or given up on (``failed``)."""
        if outcome not in NOTIFICATION_OUTCOMES:
            raise ValueError(f"outcome must be sent or failed, got {outcome!r}")
        self._notifications.labels(channel=channel, outcome=outcome).inc()

    # -- the scrape -------------------------------------------------------------------------
    async def exposition(self, store: Store, now: datetime, leader: LeaderView) -> bytes:
        """Every metric in Prometheus' text format (``CONTENT_TYPE``): this process's,
        and the store's facts as of ``now`` (three reads)."""
        workers: dict[str, int] = {}
        for worker in await store.list_workers():
            workers[worker.state] = workers.get(worker.state, 0) + 1
        facts = _StoreFacts(
            live=await store.count_live_runs(now),
            workers=workers,
            last_successes=await store.last_successes(),
            leader=leader,
        )
        return generate_latest(_Scrape(self.registry, facts))
