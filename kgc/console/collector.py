"""``/metrics``: one prometheus_client custom collector, reading the database at scrape time.

Everything comes from PostgreSQL, never from in-process counters: any number of worker
processes on any number of machines write the same tables, so any web process reports for
all of them. Every query is bounded by an index, a small table or a short window, so a
scrape stays cheap on a jobs table of millions:

* jobs per queue and state, paused flags, the oldest waiting job: ``metrics.queues_overview``;
* jobs succeeded, failed and retried, and their run times: ``jobs.job_outcome_totals``, the
  counters the jobs table's trigger and the worker's finish keep (``JobOutcomeCount``),
  which retention never lowers, so the ``*_total`` series only grow (a row queue's from its
  reader's ``totals()``);
* emails sent (monotonic) and emails per state: the email queue's reader (the outbox's counts);
* workers, duties, the leader and the scheduler: ``kgc.queue.health``.

prometheus_client writes the exposition: the text format 0.0.4, or OpenMetrics when the
scraper's ``Accept`` header asks for it (``metrics_exposition``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder, generate_latest

from kgc.console.metrics import queues_overview
from kgc.queue import health, jobs
from kgc.queue.rows import row_queue_get
from kgc.queues import EMAIL, QUEUES

QUEUE_STATES = ("waiting", "active", "delayed", "completed", "failed", "paused", "cancelled")
EMAIL_STATES = ("queued", "retrying", "sending", "failed")
SINCE = "since the counters began (retention never lowers them)"


def bound_text(bound: float) -> str:
    """A bucket's ``le`` label as it has always been written: ``1``, ``0.5``, ``+Inf``."""
    if math.isinf(bound):
        return "+Inf"
    return repr(int(bound)) if float(bound).is_integer() else repr(float(bound))


def buckets_cumulative(counts: Sequence[int], bounds: Sequence[float]) -> list[tuple[str, float]]:
    """Per-bucket counts (one past the last bound) as Prometheus' cumulative ``le`` buckets."""
    total, buckets = 0, []
    for bound, count in zip((*bounds, math.inf), counts, strict=True):
        total += count
        buckets.append((bound_text(bound), float(total)))
    return buckets


class QueueCollector:
    """Collects the queues, jobs, emails and workers at scrape time (``now``: the scrape's time,
    for the ages; the database's clock stamps heartbeats, leases and ticks)."""

    def __init__(self, *, now: datetime | None = None) -> None:
        self.now = now

    def collect(self) -> Iterator[Metric]:
        yield from self._queues(self.now or timezone.now())
        yield from self._outcomes()
        yield from self._emails()
        yield from self._workers()

    def _queues(self, now: datetime) -> Iterator[Metric]:
        overview = queues_overview(now=now)
        counts = GaugeMetricFamily("kgc_queue_jobs", "Jobs per queue and state (BullMQ's states).",
                                   labels=["queue", "state"])  # fmt: skip
        paused = GaugeMetricFamily("kgc_queue_paused", "1 while the queue is paused.", labels=["queue"])
        oldest = GaugeMetricFamily(
            "kgc_queue_oldest_waiting_age_seconds",
            "How long the first job in line has been due (0: none waits).",
            labels=["queue"],
        )
        for queue in overview:
            by_state = queue.stats.as_dict()
            for state in QUEUE_STATES:
                counts.add_metric([queue.name, state], by_state[state])
            paused.add_metric([queue.name], int(queue.is_paused))
            oldest.add_metric([queue.name], round(queue.oldest_waiting_seconds or 0.0, 3))
        yield from (counts, paused, oldest)

    def _outcomes(self) -> Iterator[Metric]:
        totals = jobs.job_outcome_totals(list(QUEUES))
        for name, field, text in (
            ("kgc_jobs_succeeded", "succeeded", f"Jobs that succeeded, {SINCE}."),
            ("kgc_jobs_failed", "failed", f"Jobs that failed for good (out of attempts, a permanent error, "
                                          f"aborted), {SINCE}."),
            ("kgc_jobs_retried", "retried", f"Failed attempts that will be retried, {SINCE}."),
        ):  # fmt: skip
            family = CounterMetricFamily(name, text, labels=["queue"])
            for queue, counted in totals.items():
                family.add_metric([queue], getattr(counted, field))
            yield family
        durations = HistogramMetricFamily(
            "kgc_job_duration_seconds",
            f"Run time of jobs that succeeded or failed for good, as their worker measured it, {SINCE}.",
            labels=["queue"],
        )
        for queue, counted in totals.items():
            buckets = buckets_cumulative(counted.durations, jobs.DURATION_BOUNDS)
            durations.add_metric([queue], buckets, round(counted.seconds, 3))
        yield durations

    def _emails(self) -> Iterator[Metric]:
        row_queue = row_queue_get(EMAIL)
        entered = row_queue.reader.totals().entered if row_queue else {}
        now_in = row_queue.reader.states() if row_queue else {}
        yield CounterMetricFamily("kgc_emails_sent", f"Emails sent, {SINCE}.", value=entered.get("sent", 0))
        states = GaugeMetricFamily("kgc_emails", "Emails not (yet) sent, by status.", labels=["status"])
        for status in EMAIL_STATES:
            states.add_metric([status], now_in.get(status, 0))
        yield states

    def _workers(self) -> Iterator[Metric]:
        cluster = health.cluster_read()
        now = cluster.now  # the database's clock stamps heartbeats and ticks
        alive = cluster.alive()
        yield GaugeMetricFamily(
            "kgc_workers_alive", "Workers whose last heartbeat is within KGC_WORKER_DEAD_AFTER.", value=len(alive)
        )
        latest = max((w.last_heartbeat for w in cluster.workers), default=None)
        yield GaugeMetricFamily(
            "kgc_worker_latest_heartbeat_age_seconds",
            "Age of the most recent heartbeat (+Inf: none).",
            value=math.inf if latest is None else _seconds(now - latest),
        )
        ages = GaugeMetricFamily("kgc_worker_heartbeat_age_seconds", "Age of each registered worker's last heartbeat.",
                                 labels=WORKER_LABELS)  # fmt: skip
        for worker in cluster.workers:
            ages.add_metric(_worker_labels(worker), _seconds(worker.heartbeat_age(now)))
        yield ages
        serving = GaugeMetricFamily("kgc_queue_workers", "Live workers serving each queue.", labels=["queue"])
        for name in QUEUES:
            serving.add_metric([name], sum(name in w.queues for w in alive))
        yield serving
        yield from _duties(alive, now=now)
        yield from _leader(cluster, now=now)


WORKER_LABELS = ["worker", "host", "pid"]


def _duties(workers: Sequence[Any], *, now: datetime) -> Iterator[Metric]:
    labels = [*WORKER_LABELS, "duty"]
    up = GaugeMetricFamily(
        "kgc_worker_duty_up", "1 while a worker's duty runs or stands by, 0 while it fails.", labels=labels
    )
    failing = GaugeMetricFamily(
        "kgc_worker_duty_failing_seconds", "How long a worker's duty has been failing (0: it is not).", labels=labels
    )
    restarts = CounterMetricFamily(
        "kgc_worker_duty_restarts", "Restarts of a worker's duty since the worker started.", labels=labels
    )
    for worker in workers:
        for duty in worker.duties:
            key = [*_worker_labels(worker), duty.name]
            up.add_metric(key, int(duty.state != "failing"))
            failing_for = duty.failing_for(now)
            failing.add_metric(key, _seconds(failing_for) if failing_for is not None else 0)
            restarts.add_metric(key, duty.restarts)
    yield from (up, failing, restarts)


def _leader(cluster: Any, *, now: datetime) -> Iterator[Metric]:
    leader = cluster.leader if cluster.leader and cluster.leader.expires_at > now else None
    info = InfoMetricFamily("kgc_leader", "1 for the worker holding the leader's lease (none: no leader).",
                            labels=[])  # fmt: skip
    if leader is not None:
        holder = next((w for w in cluster.workers if w.worker_id == leader.worker_id), None)
        labels = _worker_labels(holder) if holder else [str(leader.worker_id), "", ""]
        info.add_metric([], dict(zip(WORKER_LABELS, labels, strict=True)))
    yield info
    yield GaugeMetricFamily(
        "kgc_leader_lease_remaining_seconds",
        "Seconds left on the leader's lease (0: no leader).",
        value=_seconds(leader.expires_at - now) if leader else 0,
    )
    ticked = cluster.scheduler_ticked_at
    yield GaugeMetricFamily(
        "kgc_scheduler_last_tick_age_seconds",
        "Seconds since the scheduler last checked its schedules.",
        value=math.inf if ticked is None else _seconds(now - ticked),
    )
    yield GaugeMetricFamily(
        "kgc_scheduler_missed_ticks",
        "Schedules whose latest tick was skipped, too late to catch up (until their next tick runs).",
        value=len(cluster.scheduler_missed),
    )


def _worker_labels(worker: Any) -> list[str]:
    return [str(worker.worker_id), worker.host, str(worker.pid or "")]


def _seconds(delta: timedelta) -> float:
    return round(max(delta.total_seconds(), 0.0), 3)


def metrics_registry(*, now: datetime | None = None) -> CollectorRegistry:
    """A registry holding only the collector: no process or runtime metrics of the web process
    that happens to answer the scrape, which would mean nothing for the cluster."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(now=now))
    return registry


def metrics_exposition(*, accept: str = "", now: datetime | None = None) -> tuple[bytes, str]:
    """The page and its content type, in the format the ``Accept`` header asks for (OpenMetrics
    for ``application/openmetrics-text``, else Prometheus' text format 0.0.4)."""
    encoder, content_type = choose_encoder(accept)
    return encoder(metrics_registry(now=now)), content_type


def metrics_render(*, now: datetime | None = None) -> str:
    """The page in Prometheus' text format 0.0.4."""
    return generate_latest(metrics_registry(now=now)).decode()
