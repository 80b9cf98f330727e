"""What the operator console, ``/metrics`` and ``queue_stats`` read about the queues.

Everything comes from PostgreSQL, never from in-process counters: any number of worker
processes on any number of machines write the same tables, so any web process can
report for all of them. Each query is bounded by an index or by a short time window,
so a scrape stays cheap on a table of millions of jobs:

* counts per queue and state: ``kgc.queue.jobs.get_all_queue_stats`` (trigger-maintained);
* the oldest waiting job: the lowest id among each queue's due ``todo`` jobs;
* jobs finished: ``procrastinate_events`` through ``kgc_events_finished_idx`` (at, job_id);
* retries and failures: ``kgc_jobfailure`` through ``kgc_failure_queue_idx`` (queue, failed_at).

Counters cannot be kept monotonic forever by counting rows that retention deletes, so
the ``*_total`` series count since the start of the current UTC hour and reset on the
hour: Prometheus' ``rate()`` and ``increase()`` treat that as an ordinary counter reset.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction

from kgc.queue import jobs
from kgc.queue.rows import row_queue_get, row_queues
from kgc.queues import QUEUES, SCHEDULE_NOTES, SCHEDULES

# Upper bounds (seconds) of the job-duration histogram's buckets; +Inf is implied.
DURATION_BUCKETS: tuple[float, ...] = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0)
CHART_WINDOW = timedelta(hours=24)
CHART_BUCKET = timedelta(minutes=5)


@dataclass(frozen=True)
class QueueOverview:
    """One queue as the console shows it: its counts, pause flag and oldest waiting job."""

    name: str
    stats: jobs.QueueStats
    oldest_waiting_seconds: float | None  # None when nothing waits

    @property
    def is_paused(self) -> bool:
        return self.stats.is_paused

    @property
    def oldest_waiting_text(self) -> str:
        return age_format(self.oldest_waiting_seconds)


@contextmanager
def cursor_without_jit() -> Iterator[Any]:
    """A cursor with JIT compilation off: these queries read a few thousand rows at most, but
    the planner's row estimates for "the last hour" can exceed jit_above_cost, and compiling
    then costs far more (near a second) than running the query (milliseconds)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        yield cursor


# Each queue's first due job in line (lowest id), and since when it has been due: the
# latest of its scheduled time and the events that put it (back) in the queue. The
# per-queue subquery walks procrastinate_jobs_id_lock_idx_v1 (todo/doing jobs by id)
# and stops at the first due job of that queue.
OLDEST_WAITING_SQL = """
SELECT q.name, extract(epoch FROM %(now)s - first.since)
  FROM unnest(%(queues)s::varchar[]) AS q(name)
  LEFT JOIN LATERAL (
        SELECT greatest(job.scheduled_at,
                        (SELECT max(event.at) FROM procrastinate_events AS event
                          WHERE event.job_id = job.id
                            AND event.type IN ('deferred', 'deferred_for_retry', 'retried', 'scheduled'))) AS since
          FROM procrastinate_jobs AS job
         WHERE job.status = 'todo' AND job.queue_name = q.name
           AND (job.scheduled_at IS NULL OR job.scheduled_at <= %(now)s)
         ORDER BY job.id
         LIMIT 1
  ) AS first ON true
"""


def oldest_waiting_ages(*, names: Sequence[str], now: datetime) -> dict[str, float | None]:
    """Seconds the first waiting job of each queue has been due (None: nothing waits)."""
    with cursor_without_jit() as cursor:
        cursor.execute(OLDEST_WAITING_SQL, {"queues": list(names), "now": now})
        return {name: None if age is None else max(float(age), 0.0) for name, age in cursor.fetchall()}


def queues_overview(*, now: datetime) -> list[QueueOverview]:
    """Every product queue, in declaration order, with counts and oldest waiting age."""
    stats = jobs.get_all_queue_stats()
    # Only queues with jobs due need the search (which walks the due jobs in id order); a
    # row queue's reader finds its own oldest waiting item.
    due = [name for name, counts in stats.items() if counts.waiting or counts.paused]
    ages = oldest_waiting_ages(names=[name for name in due if not row_queue_get(name)], now=now) if due else {}
    for name in due:
        if (row_queue := row_queue_get(name)) is not None:
            ages[name] = row_queue.reader.oldest_waiting_seconds(now=now)
    return [QueueOverview(name=name, stats=stats[name], oldest_waiting_seconds=ages.get(name)) for name in stats]


# --- The dashboard chart ------------------------------------------------------------------


@dataclass(frozen=True)
class FinishedBucket:
    start: datetime
    completed: int = 0
    failed: int = 0


CHART_SQL = """
SELECT date_bin(%(bucket)s, event.at, %(origin)s) AS bucket, event.type::text, count(*)
  FROM procrastinate_events AS event
 WHERE event.type IN ('succeeded', 'failed') AND event.at >= %(origin)s AND event.at < %(now)s
 GROUP BY 1, 2
"""


def chart_origin(now: datetime, *, window: timedelta = CHART_WINDOW, bucket: timedelta = CHART_BUCKET) -> datetime:
    """Start of the chart: ``window`` before the end of the bucket that holds ``now``."""
    epoch = datetime(2000, 1, 1, tzinfo=now.tzinfo)
    end = epoch + ((now - epoch) // bucket + 1) * bucket
    return end - window


def buckets_fill(
    rows: Iterable[tuple[datetime, str, int]], *, origin: datetime, count: int, bucket: timedelta
) -> list[FinishedBucket]:
    """Every bucket of the chart in order, zero where nothing finished."""
    found: dict[datetime, dict[str, int]] = {}
    for start, kind, total in rows:
        counts = found.setdefault(start, {})
        counts[kind] = counts.get(kind, 0) + int(total)
    result = []
    for index in range(count):
        start = origin + index * bucket
        counts = found.get(start, {})
        result.append(FinishedBucket(start=start, completed=counts.get("succeeded", 0), failed=counts.get("failed", 0)))
    return result


def jobs_finished_series(*, now: datetime) -> list[FinishedBucket]:
    """Jobs (and row queues' items) completed and failed (for good) per 5 minutes over the 24 hours up to ``now``."""
    origin = chart_origin(now)
    with cursor_without_jit() as cursor:
        cursor.execute(CHART_SQL, {"bucket": CHART_BUCKET, "origin": origin, "now": now})
        rows = cursor.fetchall()
    for row_queue in row_queues().values():
        for start, ended in row_queue.reader.finished_series(origin=origin, now=now, bucket=CHART_BUCKET).items():
            rows += [(start, "succeeded", ended.completed), (start, "failed", ended.failed)]
    return buckets_fill(rows, origin=origin, count=CHART_WINDOW // CHART_BUCKET, bucket=CHART_BUCKET)


# --- Schedules ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleNext:
    task: str
    cron: str
    next_run: datetime
    note: str = ""  # what it does in each tenant's own time (kgc/queues.py SCHEDULE_NOTES)


def schedules_next(*, now: datetime) -> list[ScheduleNext]:
    """Each periodic schedule of ``kgc/queues.py`` with its next run after ``now`` (UTC)."""
    from croniter import croniter  # procrastinate's own dependency for periodic tasks
    from django.conf import settings

    hours = {"reminder_hour": settings.KGC_REMINDER_HOUR, "digest_hour": settings.KGC_DIGEST_HOUR}
    return [
        ScheduleNext(
            task=task,
            cron=cron,
            next_run=croniter(cron, now).get_next(datetime),
            note=SCHEDULE_NOTES.get(task, "").format(**hours),
        )
        for task, cron in sorted(SCHEDULES.items())
    ]


# --- Prometheus exposition ----------------------------------------------------------------


@dataclass
class Histogram:
    """Cumulative bucket counts in Prometheus' sense (each counts every value up to its bound)."""

    bounds: tuple[float, ...] = DURATION_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf

    def add(self, bucket_index: int, count: int, total_seconds: float) -> None:
        """``bucket_index`` is 0-based over the bounds, ``len(bounds)`` for values above the last."""
        for index in range(bucket_index, len(self.counts)):
            self.counts[index] += count
        self.total += total_seconds

    @property
    def count(self) -> int:
        return self.counts[-1]


# Finished jobs of this hour with their run time: from the job's last 'started' event to
# its finishing event. Both lookups are index scans (finished events by time; events by job).
FINISHED_SQL = """
WITH finished AS (
    -- The queue through a correlated subquery: one primary-key lookup per finished job
    -- (a join tempts the planner into a sequential scan of the whole jobs table).
    SELECT (SELECT job.queue_name FROM procrastinate_jobs AS job WHERE job.id = finished.job_id) AS queue_name,
           finished.type::text AS kind,
           extract(epoch FROM finished.at - started.at)::float8 AS seconds
      FROM procrastinate_events AS finished
      LEFT JOIN LATERAL (
            SELECT max(event.at) AS at FROM procrastinate_events AS event
             WHERE event.job_id = finished.job_id AND event.type = 'started' AND event.at <= finished.at
      ) AS started ON true
     WHERE finished.type IN ('succeeded', 'failed') AND finished.at >= %(since)s AND finished.at < %(now)s
)
-- bucket: how many bounds lie below the value, i.e. the index of the first bound >= it (le)
SELECT queue_name, kind,
       CASE WHEN seconds IS NULL THEN NULL
            ELSE (SELECT count(*) FROM unnest(%(bounds)s::float8[]) AS bound WHERE bound < seconds) END,
       count(*), coalesce(sum(seconds), 0)::float8
  FROM finished GROUP BY 1, 2, 3
"""

FAILURES_SQL = """
SELECT queue_name, will_retry, count(*) FROM kgc_jobfailure
 WHERE queue_name = ANY(%(queues)s::varchar[]) AND failed_at >= %(since)s AND failed_at < %(now)s
 GROUP BY 1, 2
"""

# From the outbox's counts (kept by triggers, notifications/outbox.py): emails sent since the
# start of the hour, and the emails in each unfinished state and failed.
EMAILS_SQL = """
SELECT 'sent', coalesce(sum(entered), 0) FROM notifications_emailcount
 WHERE state = 'sent' AND bucket >= %(since)s AND bucket < %(now)s
UNION ALL
SELECT state, sum(delta) FROM notifications_emailcount
 WHERE state IN ('queued', 'retrying', 'sending', 'failed') GROUP BY 1
"""


def hour_start(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0)


@dataclass
class JobTotals:
    succeeded: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    retried: dict[str, int] = field(default_factory=dict)
    durations: dict[str, Histogram] = field(default_factory=dict)


def job_totals(*, since: datetime, now: datetime) -> JobTotals:
    """Jobs finished, failed for good and failed-and-retried per queue between ``since`` and ``now``."""
    names = list(QUEUES)
    totals = JobTotals(
        succeeded=dict.fromkeys(names, 0),
        failed=dict.fromkeys(names, 0),
        retried=dict.fromkeys(names, 0),
        durations={name: Histogram() for name in names},
    )
    with cursor_without_jit() as cursor:
        cursor.execute(FINISHED_SQL, {"bounds": list(DURATION_BUCKETS), "since": since, "now": now})
        for queue, kind, bucket, count, seconds in cursor.fetchall():
            if queue not in totals.durations:
                continue
            if kind == "succeeded":
                totals.succeeded[queue] += count
            if bucket is not None:  # a job finished without a 'started' event has no duration
                totals.durations[queue].add(bucket, count, seconds)
        cursor.execute(FAILURES_SQL, {"queues": names, "since": since, "now": now})
        for queue, will_retry, count in cursor.fetchall():
            (totals.retried if will_retry else totals.failed)[queue] += count
    for name, row_queue in row_queues().items():  # a row queue's items, not its jobs
        if name in totals.succeeded:
            ended = row_queue.reader.activity(since=since, now=now)
            totals.succeeded[name], totals.failed[name], totals.retried[name] = (
                ended.completed,
                ended.failed,
                ended.retried,
            )
    return totals


def email_totals(*, since: datetime, now: datetime) -> dict[str, int]:
    with cursor_without_jit() as cursor:
        cursor.execute(EMAILS_SQL, {"since": since, "now": now})
        found = {status: int(count) for status, count in cursor.fetchall()}
    return {status: max(found.get(status, 0), 0) for status in ("sent", "queued", "retrying", "sending", "failed")}


def label_escape(value: str) -> str:
    """Backslash, double quote and newline escaped, as the text format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    pairs = ",".join(f'{key}="{label_escape(value)}"' for key, value in labels.items())
    return "{" + pairs + "}" if labels else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


class Exposition:
    """Prometheus text format 0.0.4: HELP and TYPE once per family, then its samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]

    def sample(self, name: str, value: float, **labels: str) -> None:
        self.lines.append(f"{name}{_labels(**labels)} {_number(value)}")

    def histogram(self, name: str, histogram: Histogram, **labels: str) -> None:
        for bound, count in zip((*histogram.bounds, math.inf), histogram.counts, strict=True):
            self.sample(f"{name}_bucket", count, **labels, le=_number(bound) if bound != math.inf else "+Inf")
        self.sample(f"{name}_sum", round(histogram.total, 3), **labels)
        self.sample(f"{name}_count", histogram.count, **labels)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


QUEUE_STATES = ("waiting", "active", "delayed", "completed", "failed", "paused", "cancelled")


def metrics_render(*, now: datetime) -> str:
    """The whole ``/metrics`` page for ``now``."""
    out = Exposition()
    overview = queues_overview(now=now)
    out.family("kgc_queue_jobs", "gauge", "Jobs per queue and state (BullMQ's states).")
    for queue in overview:
        counts = queue.stats.as_dict()
        for state in QUEUE_STATES:
            out.sample("kgc_queue_jobs", counts[state], queue=queue.name, state=state)
    out.family("kgc_queue_paused", "gauge", "1 while the queue is paused.")
    for queue in overview:
        out.sample("kgc_queue_paused", int(queue.is_paused), queue=queue.name)
    out.family(
        "kgc_queue_oldest_waiting_age_seconds", "gauge", "How long the first job in line has been due (0: none waits)."
    )
    for queue in overview:
        out.sample(
            "kgc_queue_oldest_waiting_age_seconds", round(queue.oldest_waiting_seconds or 0.0, 3), queue=queue.name
        )
    _render_totals(out, since=hour_start(now), now=now)
    _render_workers(out)
    return out.text()


def _render_totals(out: Exposition, *, since: datetime, now: datetime) -> None:
    totals = job_totals(since=since, now=now)
    hourly = "since the start of the current UTC hour (resets hourly)"
    for name, values, text in (
        ("kgc_jobs_succeeded_total", totals.succeeded, f"Jobs that succeeded, {hourly}."),
        ("kgc_jobs_failed_total", totals.failed, f"Jobs that failed for good, {hourly}."),
        ("kgc_jobs_retried_total", totals.retried, f"Failed attempts that will be retried, {hourly}."),
    ):
        out.family(name, "counter", text)
        for queue, value in values.items():
            out.sample(name, value, queue=queue)
    out.family("kgc_job_duration_seconds", "histogram", f"Run time of finished jobs, {hourly}.")
    for queue, histogram in totals.durations.items():
        out.histogram("kgc_job_duration_seconds", histogram, queue=queue)
    emails = email_totals(since=since, now=now)
    out.family("kgc_emails_sent_total", "counter", f"Emails sent, {hourly}.")
    out.sample("kgc_emails_sent_total", emails["sent"])
    out.family("kgc_emails", "gauge", "Emails not (yet) sent, by status.")
    for status in ("queued", "retrying", "sending", "failed"):
        out.sample("kgc_emails", emails[status], status=status)


def _render_workers(out: Exposition) -> None:
    from kgc.queue import health

    cluster = health.cluster_read()
    now = cluster.now  # the database's clock stamps heartbeats and ticks
    alive = cluster.alive()
    out.family("kgc_workers_alive", "gauge", "Workers whose last heartbeat is within KGC_WORKER_DEAD_AFTER.")
    out.sample("kgc_workers_alive", len(alive))
    latest = max((w.last_heartbeat for w in cluster.workers), default=None)
    out.family("kgc_worker_latest_heartbeat_age_seconds", "gauge", "Age of the most recent heartbeat (+Inf: none).")
    out.sample("kgc_worker_latest_heartbeat_age_seconds", math.inf if latest is None else _seconds(now - latest))
    out.family("kgc_worker_heartbeat_age_seconds", "gauge", "Age of each registered worker's last heartbeat.")
    for worker in cluster.workers:
        out.sample("kgc_worker_heartbeat_age_seconds", _seconds(worker.heartbeat_age(now)), **_worker_labels(worker))
    out.family("kgc_queue_workers", "gauge", "Live workers serving each queue.")
    for name in QUEUES:
        out.sample("kgc_queue_workers", sum(name in w.queues for w in alive), queue=name)
    _render_duties(out, alive, now=now)
    _render_leader(out, cluster, now=now)


def _render_duties(out: Exposition, workers: Sequence[Any], *, now: datetime) -> None:
    out.family("kgc_worker_duty_up", "gauge", "1 while a worker's duty runs or stands by, 0 while it fails.")
    for worker in workers:
        for duty in worker.duties:
            out.sample("kgc_worker_duty_up", int(duty.state != "failing"), duty=duty.name, **_worker_labels(worker))
    out.family("kgc_worker_duty_failing_seconds", "gauge", "How long a worker's duty has been failing (0: it is not).")
    for worker in workers:
        for duty in worker.duties:
            failing = duty.failing_for(now)
            value = _seconds(failing) if failing is not None else 0
            out.sample("kgc_worker_duty_failing_seconds", value, duty=duty.name, **_worker_labels(worker))
    out.family("kgc_worker_duty_restarts_total", "counter", "Restarts of a worker's duty since the worker started.")
    for worker in workers:
        for duty in worker.duties:
            out.sample("kgc_worker_duty_restarts_total", duty.restarts, duty=duty.name, **_worker_labels(worker))


def _render_leader(out: Exposition, cluster: Any, *, now: datetime) -> None:
    leader = cluster.leader if cluster.leader and cluster.leader.expires_at > now else None
    out.family("kgc_leader_info", "gauge", "1 for the worker holding the leader's lease (none: no leader).")
    if leader is not None:
        holder = next((w for w in cluster.workers if w.worker_id == leader.worker_id), None)
        labels = _worker_labels(holder) if holder else {"worker": str(leader.worker_id), "host": "", "pid": ""}
        out.sample("kgc_leader_info", 1, **labels)
    out.family("kgc_leader_lease_remaining_seconds", "gauge", "Seconds left on the leader's lease (0: no leader).")
    out.sample("kgc_leader_lease_remaining_seconds", _seconds(leader.expires_at - now) if leader else 0)
    ticked = cluster.scheduler_ticked_at
    out.family(
        "kgc_scheduler_last_tick_age_seconds", "gauge", "Seconds since the scheduler last checked its schedules."
    )
    out.sample("kgc_scheduler_last_tick_age_seconds", math.inf if ticked is None else _seconds(now - ticked))
    out.family(
        "kgc_scheduler_missed_ticks",
        "gauge",
        "Schedules whose latest tick was skipped, too late to catch up (until their next tick runs).",
    )
    out.sample("kgc_scheduler_missed_ticks", len(cluster.scheduler_missed))


def _worker_labels(worker: Any) -> dict[str, str]:
    return {"worker": str(worker.worker_id), "host": worker.host, "pid": str(worker.pid or "")}


def _seconds(delta: timedelta) -> float:
    return round(max(delta.total_seconds(), 0.0), 3)


def overview_as_dict(queue: QueueOverview) -> dict[str, object]:
    """One queue as plain JSON data (the dashboard's poll and ``queue_stats --json``)."""
    return {
        **queue.stats.as_dict(),
        "is_paused": queue.is_paused,
        "oldest_waiting_seconds": None
        if queue.oldest_waiting_seconds is None
        else round(queue.oldest_waiting_seconds, 1),
    }


def age_format(seconds: float | None) -> str:
    """``None`` → "-", else the two largest units: "45s", "3m 20s", "2h 5m", "4d 3h"."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if parts or whole >= size or unit == "s":
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return " ".join(parts[:2])


def text_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Rows as a left-aligned plain-text table with a rule under the headers."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(header), *(len(row[index]) for row in cells)]) for index, header in enumerate(headers)]
    lines = [
        "  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *cells]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
