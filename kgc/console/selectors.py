"""What the operator console reads beyond the counts (``kgc.console.metrics``): each queue's capacity,
rate-limit use, throughput and failure rate; the workers with what they run and the lease
they hold; the chart's per-queue series.

Every query is bounded by an index and a time window, or by a cap, so that the dashboard
stays fast on a jobs table of millions:

* capacity from ``kgc_workerprocess`` (a row per live worker process);
* rate-limit use from ``kgc_ratelimitslot`` (a row per queue and second of the window);
* jobs finished from ``procrastinate_events`` through ``kgc_events_finished_idx``, newest
  first, at most ``FINISHED_CAP`` of them, each job's queue by a primary-key lookup; when
  the cap cuts a window short, the rate is taken over the part it covers and says so;
* failed attempts from ``kgc_jobfailure`` through ``kgc_failure_queue_idx``;
* running jobs through procrastinate's index on ``worker_id`` of running jobs.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kgc.console import display, metrics
from kgc.queue import health
from kgc.queue.health import jsonb_value
from kgc.queue.rows import row_queue_get, row_queues
from kgc.queues import QUEUES, RateLimit, product_queues, rate_limits

FINISHED_CAP = 20_000
RUNNING_SHOWN = 10  # running jobs listed per worker; the rest are counted
WORKERS_SHOWN = 200


# --- Queues ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueActivity:
    """One queue's capacity and recent work, beside its counts."""

    name: str
    concurrency: int  # jobs at once, summed over the live worker processes serving the queue
    rate_limit: RateLimit | None
    window_used: int | None  # job starts counted in the rate limit's current window
    per_minute_5: float | None
    per_minute_60: float | None
    covered_minutes: float | None  # set when the cap cut the hour short: what the rate covers
    failure_rate: float | None  # failed attempts / attempts that ended, over the last hour

    @property
    def rate_limit_text(self) -> str:
        if self.rate_limit is None:
            return "none"
        return f"{self.window_used or 0} of {self.rate_limit.limit} / {self.rate_limit.per.total_seconds():g} s"

    @property
    def window_used_ratio(self) -> float:
        if self.rate_limit is None or not self.rate_limit.limit:
            return 0.0
        return min((self.window_used or 0) / self.rate_limit.limit, 1.0)


CONCURRENCY_SQL = r"""
SELECT per_queue.key, sum(CASE WHEN per_queue.value ~ '^\d+$' THEN per_queue.value::int ELSE 0 END)
  FROM kgc_workerprocess AS process
  JOIN procrastinate_workers AS worker ON worker.id = process.worker_id
 CROSS JOIN LATERAL jsonb_each_text(process.concurrency) AS per_queue
 WHERE worker.last_heartbeat >= %(live_since)s
 GROUP BY 1
"""

# The slots kgc_fetch_job counts: from the start of the oldest second a window ending now can touch.
WINDOW_SQL = """
SELECT limit_.name, coalesce(sum(slot.starts), 0)
  FROM unnest(%(names)s::varchar[], %(seconds)s::float8[]) AS limit_(name, seconds)
  LEFT JOIN kgc_ratelimitslot AS slot
    ON slot.queue_name = limit_.name
   AND slot.slot >= date_trunc('second', %(now)s::timestamptz) - make_interval(secs => ceil(limit_.seconds))
 GROUP BY 1
"""

RECENT_FINISHED_SQL = """
WITH recent AS (
    SELECT event.job_id, event.at, event.type FROM procrastinate_events AS event
     WHERE event.type IN ('succeeded', 'failed') AND event.at >= %(since)s AND event.at < %(now)s
     ORDER BY event.at DESC
     LIMIT %(cap)s
)
SELECT (SELECT job.queue_name FROM procrastinate_jobs AS job WHERE job.id = recent.job_id),
       count(*) FILTER (WHERE recent.at >= %(recent_since)s), count(*),
       count(*) FILTER (WHERE recent.type = 'succeeded'), min(recent.at)
  FROM recent GROUP BY 1
"""

FAILED_ATTEMPTS_SQL = """
SELECT queue_name, count(*) FROM kgc_jobfailure
 WHERE queue_name = ANY(%(queues)s::varchar[]) AND failed_at >= %(since)s AND failed_at < %(now)s
 GROUP BY 1
"""


def _per_minute(count: int, minutes: float) -> float:
    return count / minutes if minutes > 0 else 0.0


def queue_activity(*, now: datetime) -> dict[str, QueueActivity]:
    """Every product queue's concurrency, rate-limit use, throughput and failure rate at ``now``."""
    names = [queue.name for queue in product_queues()]
    limits = rate_limits()
    limited = [name for name in names if name in limits]
    with metrics.cursor_without_jit() as cursor:
        cursor.execute(CONCURRENCY_SQL, {"live_since": now - health.worker_dead_after()})
        concurrency = {name: int(total) for name, total in cursor.fetchall()}
        cursor.execute(
            WINDOW_SQL,
            {"names": limited, "seconds": [limits[name].per.total_seconds() for name in limited], "now": now},
        )
        used = {name: int(total) for name, total in cursor.fetchall()}
        hour_ago = now - timedelta(hours=1)
        cursor.execute(
            RECENT_FINISHED_SQL,
            {"since": hour_ago, "recent_since": now - timedelta(minutes=5), "now": now, "cap": FINISHED_CAP},
        )
        finished = {
            queue: (int(last5), int(last60), int(succeeded), oldest)
            for queue, last5, last60, succeeded, oldest in cursor.fetchall()
        }
        capped = sum(counts[1] for counts in finished.values()) >= FINISHED_CAP
        oldest_covered = min((counts[3] for counts in finished.values()), default=None)
        # Failed attempts over the span the finished jobs cover, so that the rate compares like with like.
        since = oldest_covered if capped and oldest_covered else hour_ago
        cursor.execute(FAILED_ATTEMPTS_SQL, {"queues": names, "since": since, "now": now})
        failed_attempts = {queue: int(count) for queue, count in cursor.fetchall()}
    minutes_60 = (now - since).total_seconds() / 60
    for name in names:
        if (row_queue := row_queue_get(name)) is not None:  # its items, not its jobs
            recent = row_queue.reader.activity(since=now - timedelta(minutes=5), now=now)
            hour = row_queue.reader.activity(since=since, now=now)
            finished[name] = (recent.completed + recent.failed, hour.completed + hour.failed, hour.completed, None)
            failed_attempts[name] = hour.failed + hour.retried
    activity = {}
    for name in names:
        last5, last60, succeeded, _ = finished.get(name, (0, 0, 0, None))
        failed = failed_attempts.get(name, 0)
        ended = succeeded + failed  # attempts that ended: each succeeded job, each failed attempt
        activity[name] = QueueActivity(
            name=name,
            concurrency=concurrency.get(name, 0),
            rate_limit=limits.get(name),
            window_used=used.get(name) if name in limits else None,
            # A capped hour may not reach back 5 minutes either when jobs finish very fast.
            per_minute_5=_per_minute(last5, min(5.0, minutes_60)),
            per_minute_60=_per_minute(last60, minutes_60),
            covered_minutes=round(minutes_60, 1) if capped else None,
            failure_rate=failed / ended if ended else None,
        )
    return activity


# --- Workers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunningJob:
    id: int
    task: str
    queue: str
    started_at: datetime | None


@dataclass(frozen=True)
class WorkerView:
    id: int
    last_heartbeat: datetime
    alive: bool
    heartbeat_age: str
    host: str | None  # None: the worker reports no process details (kgc_workerprocess)
    pid: int | None
    queues: list[str]
    concurrency: dict[str, Any]
    started_at: datetime | None
    duties: list[display.DutyView]
    leases: list[str]
    running: list[RunningJob]
    running_total: int


WORKERS_SQL = """
SELECT worker.id, worker.last_heartbeat, process.host, process.pid, process.queues, process.concurrency,
       process.started_at, process.duties
  FROM procrastinate_workers AS worker
  LEFT JOIN kgc_workerprocess AS process ON process.worker_id = worker.id
 ORDER BY worker.last_heartbeat DESC, worker.id
 LIMIT %(limit)s
"""

RUNNING_SQL = """
SELECT job.worker_id, job.id, job.task_name, job.queue_name,
       (SELECT max(event.at) FROM procrastinate_events AS event WHERE event.job_id = job.id AND event.type = 'started')
  FROM procrastinate_jobs AS job
 WHERE job.status = 'doing' AND job.worker_id = ANY(%(workers)s::bigint[])
 ORDER BY job.id
"""

LEASES_SQL = "SELECT worker_id, name FROM kgc_leadership WHERE expires_at > %(now)s ORDER BY name"


def workers_overview(*, now: datetime, limit: int = WORKERS_SHOWN) -> list[WorkerView]:
    """Registered workers, most recent heartbeat first, with their process, duties, leases and jobs."""
    with metrics.cursor_without_jit() as cursor:
        cursor.execute(WORKERS_SQL, {"limit": limit})
        rows = cursor.fetchall()
        ids = [row[0] for row in rows]
        cursor.execute(RUNNING_SQL, {"workers": ids})
        running: dict[int, list[RunningJob]] = defaultdict(list)
        for worker_id, job_id, task, queue, started_at in cursor.fetchall():
            running[worker_id].append(RunningJob(id=job_id, task=task, queue=queue, started_at=started_at))
        cursor.execute(LEASES_SQL, {"now": now})
        leases: dict[int, list[str]] = defaultdict(list)
        for worker_id, name in cursor.fetchall():
            leases[worker_id].append(name)
    views = []
    for worker_id, heartbeat, host, pid, queues, concurrency, started_at, duties in rows:
        jobs = running.get(worker_id, [])
        views.append(
            WorkerView(
                id=worker_id,
                last_heartbeat=heartbeat,
                alive=now - heartbeat <= health.worker_dead_after(),
                heartbeat_age=metrics.age_format(max((now - heartbeat).total_seconds(), 0.0)),
                host=host,
                pid=pid,
                queues=list(queues or []),
                concurrency=jsonb_value(concurrency) or {},
                started_at=started_at,
                duties=display.duties_summary(jsonb_value(duties) or {}),
                leases=leases.get(worker_id, []),
                running=jobs[:RUNNING_SHOWN],
                running_total=len(jobs),
            )
        )
    return views


# --- The chart, one series per queue -------------------------------------------------------


@dataclass(frozen=True)
class QueueSeries:
    counts: dict[str, list[int]]  # jobs finished per bucket, per queue
    covered_since: datetime | None  # set when the cap cut the day short: the series start here


SERIES_SQL = """
WITH recent AS (
    SELECT event.job_id, event.at FROM procrastinate_events AS event
     WHERE event.type IN ('succeeded', 'failed') AND event.at >= %(origin)s AND event.at < %(now)s
     ORDER BY event.at DESC
     LIMIT %(cap)s
)
SELECT date_bin(%(bucket)s, recent.at, %(origin)s),
       (SELECT job.queue_name FROM procrastinate_jobs AS job WHERE job.id = recent.job_id),
       count(*), min(recent.at)
  FROM recent GROUP BY 1, 2
"""


def jobs_finished_by_queue(*, now: datetime, cap: int = FINISHED_CAP) -> QueueSeries:
    """Jobs finished per 5 minutes and per queue over the chart's 24 hours, newest ``cap`` at most."""
    origin = metrics.chart_origin(now)
    buckets = math.ceil(metrics.CHART_WINDOW / metrics.CHART_BUCKET)
    counts = {queue.name: [0] * buckets for queue in QUEUES.values()}
    with metrics.cursor_without_jit() as cursor:
        cursor.execute(SERIES_SQL, {"bucket": metrics.CHART_BUCKET, "origin": origin, "now": now, "cap": cap})
        rows = cursor.fetchall()
    for name, row_queue in row_queues().items():
        if name in counts:
            for start, ended in row_queue.reader.finished_series(
                origin=origin, now=now, bucket=metrics.CHART_BUCKET
            ).items():
                index = int((start - origin) / metrics.CHART_BUCKET)
                if 0 <= index < buckets:
                    counts[name][index] += ended.completed + ended.failed
    seen = 0
    oldest: datetime | None = None
    for start, queue, count, first in rows:
        index = int((start - origin) / metrics.CHART_BUCKET)
        if queue in counts and 0 <= index < buckets:
            counts[queue][index] += int(count)
        seen += int(count)
        oldest = first if oldest is None else min(oldest, first)
    return QueueSeries(counts=counts, covered_since=oldest if seen >= cap else None)
