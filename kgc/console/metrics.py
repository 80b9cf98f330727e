"""What the operator console, ``/metrics`` and ``queue_stats`` read about the queues.

Everything comes from PostgreSQL, never from in-process counters: any number of worker
processes on any number of machines write the same tables, so any web process can
report for all of them. Each query is bounded by an index or by a short time window,
so a page or a scrape stays cheap on a table of millions of jobs:

* counts per queue and state: ``kgc.queue.jobs.get_all_queue_stats`` (trigger-maintained);
* the oldest waiting job: the lowest id among each queue's due ``todo`` jobs;
* jobs finished per 5 minutes (the dashboard's chart): ``procrastinate_events`` through
  ``kgc_events_finished_idx`` (at, job_id).

``/metrics`` itself is ``collector``'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction

from kgc.queue import jobs
from kgc.queue.rows import row_queue_get, row_queues
from kgc.queues import SCHEDULE_NOTES, SCHEDULES

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
