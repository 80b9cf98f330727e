"""The queue layer's services: what BullMQ gave the seed and procrastinate lacks.

Deferring with BullMQ priorities and de-duplication, pause and resume, counts in
BullMQ's shape, cleanup by age, failure records and retries. Everything here goes
through Django's database connection, so a call inside ``transaction.atomic()``
commits or rolls back with the caller's rows.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from procrastinate import exceptions as procrastinate_exceptions
from procrastinate.contrib.django import app

from kgc.queue import signals, tracing
from kgc.queue.models import JobFailure, QueuePause
from kgc.queue.retry import QueueRetryStrategy
from kgc.queue.rows import RowCounts, row_queue_get, row_queues
from kgc.queues import QUEUES, product_queues, queue_get

# BullMQ's priorities: 1 is the highest and larger numbers are lower; a job without
# one counts as DEFAULT_PRIORITY. procrastinate runs the highest number first, so the
# stored priority is the negated BullMQ one.
DEFAULT_PRIORITY = 100
MAX_PRIORITY = 1_000_000


class JobError(ValueError):
    """Base of the queue layer's errors about a job or its arguments."""


class InvalidPriority(JobError):
    pass


class JobNotFound(JobError, LookupError):
    pass


class UnknownTask(JobError, LookupError):
    pass


class JobNotRetryable(JobError):
    pass


def task(*, queue: str, name: str, **options: Any) -> Callable[[Callable[..., Any]], Any]:
    """Declare a task on one of ``kgc/queues.py``'s queues, with that queue's retry policy.

    A job deferred with procrastinate's own ``defer()`` (the scheduler's ticks too) gets the
    default priority on BullMQ's scale, like one deferred without a priority here:
    procrastinate's own default, 0, would run it before every job of priority 1."""
    declared = queue_get(queue)
    options.setdefault("priority", priority_to_stored(None))
    return app.task(queue=declared.name, name=name, retry=QueueRetryStrategy(declared.retry), **options)


def priority_problem(priority: object) -> str | None:
    """What is wrong with a priority (None: nothing; a missing one is the default)."""
    if priority is None:
        return None
    if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= MAX_PRIORITY:
        return f"must be a whole number from 1 (highest) to {MAX_PRIORITY}, got {priority!r}"
    return None


def priority_to_stored(priority: int | None) -> int:
    if (problem := priority_problem(priority)) is not None:
        raise InvalidPriority(f"priority {problem}")
    return -DEFAULT_PRIORITY if priority is None else -priority


def priority_from_stored(stored: int) -> int:
    return -stored


def job_defer(
    *,
    task_name: str,
    kwargs: dict[str, Any],
    priority: int | None = None,
    queueing_lock: str | None = None,
    schedule_in: timedelta | None = None,
) -> tuple[int, bool]:
    """Defer a job; return ``(job id, created)``.

    With a ``queueing_lock``, a job already waiting under that lock is returned instead
    of a second one (``created`` is False), its priority raised to this one's if higher.
    The insert runs in a savepoint: procrastinate's AlreadyEnqueued is a unique
    violation, which would otherwise break the caller's transaction.

    With tracing on, the defer has its span, whose context the job carries to its run
    (``kgc/queue/tracing.py``).
    """
    if not tracing.enabled() or (declared := app.tasks.get(task_name)) is None:
        return _job_defer(task_name, kwargs, priority, queueing_lock, schedule_in)
    with tracing.defer_span(queue=declared.queue, task_name=task_name, tenant_id=kwargs.get("tenant_id")) as deferral:
        job_id, created = _job_defer(
            task_name, {**kwargs, tracing.TRACE_CONTEXT_KEY: deferral.carrier}, priority, queueing_lock, schedule_in
        )
        deferral.deferred(job_id, created=created)
        return job_id, created


def _job_defer(
    task_name: str,
    kwargs: dict[str, Any],
    priority: int | None,
    queueing_lock: str | None,
    schedule_in: timedelta | None,
) -> tuple[int, bool]:
    configure: dict[str, Any] = {"priority": priority_to_stored(priority)}
    if queueing_lock:
        configure["queueing_lock"] = queueing_lock
    if schedule_in:
        configure["schedule_in"] = {"seconds": schedule_in.total_seconds()}
    try:
        deferrer = app.configure_task(task_name, allow_unknown=False, **configure)
    except procrastinate_exceptions.TaskNotFound:
        raise UnknownTask(f"no task named {task_name!r}") from None
    try:
        with transaction.atomic():
            return deferrer.defer(**kwargs), True
    except procrastinate_exceptions.AlreadyEnqueued:
        # The waiting job takes the higher of the two priorities: a manual refresh with
        # priority 1 must not wait behind the nightly fan-out because one was queued first.
        with connection.cursor() as cursor:
            cursor.execute(
                """UPDATE procrastinate_jobs SET priority = GREATEST(priority, %s)
                    WHERE queueing_lock = %s AND status = 'todo' RETURNING id""",
                [configure["priority"], queueing_lock],
            )
            row = cursor.fetchone()
        if row is None:  # the waiting job started in between: this one is new after all
            return _job_defer(task_name, kwargs, priority, queueing_lock, schedule_in)
        return row[0], False


# --- Pause and resume -------------------------------------------------------------------


def _notify_queue(name: str) -> None:
    """Wake the workers listening on a queue (procrastinate's own channel and payload)."""
    payload = json.dumps({"type": "job_inserted", "job_id": None})
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_notify(%s, %s), pg_notify('procrastinate_any_queue_v1', %s)",
            [f"procrastinate_queue_v1#{name}", payload, payload],
        )


def pause_queue(name: str, *, by: str = "") -> bool:
    """Stop every worker from starting jobs of this queue; running jobs finish. True if it was running."""
    queue = queue_get(name)
    _, created = QueuePause.objects.get_or_create(queue_name=queue.name, defaults={"paused_by": by})
    return created


def resume_queue(name: str) -> bool:
    """Let workers start this queue's jobs again, at once. True if it was paused."""
    queue = queue_get(name)
    deleted, _ = QueuePause.objects.filter(queue_name=queue.name).delete()
    transaction.on_commit(lambda: _notify_queue(queue.name))
    return bool(deleted)


def is_paused(name: str) -> bool:
    return QueuePause.objects.filter(queue_name=queue_get(name).name).exists()


# --- Counts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueStats:
    """BullMQ's job counts for one queue.

    procrastinate status → count: ``todo`` due now → ``waiting`` (or ``paused`` while the
    queue is paused); ``todo`` scheduled later (a retry backoff, a delayed job) →
    ``delayed``; ``doing`` → ``active``; ``succeeded`` → ``completed``; ``failed`` →
    ``failed``; ``cancelled`` and ``aborted`` → ``cancelled``.
    """

    waiting: int = 0
    active: int = 0
    delayed: int = 0
    completed: int = 0
    failed: int = 0
    paused: int = 0
    cancelled: int = 0
    is_paused: bool = field(default=False, compare=False)

    def as_dict(self) -> dict[str, int]:
        counts = asdict(self)
        counts.pop("is_paused")
        return counts


# One query, over small tables and a partial index: the per-status totals come from
# the trigger-maintained deltas, the delayed jobs from kgc_jobs_delayed_idx.
STATS_SQL = """
SELECT queue_name, status, sum(delta)::bigint FROM kgc_jobcountdelta GROUP BY 1, 2
UNION ALL
SELECT queue_name, 'delayed', count(*) FROM procrastinate_jobs
 WHERE status = 'todo' AND scheduled_at > now() GROUP BY 1
UNION ALL
SELECT queue_name, 'paused', 1 FROM kgc_queuepause
"""


def _stats_from_rows(rows: list[tuple[str, str, int]], names: list[str]) -> dict[str, QueueStats]:
    raw: dict[str, dict[str, int]] = {name: {} for name in names}
    for queue_name, status, count in rows:
        if queue_name in raw:
            raw[queue_name][status] = raw[queue_name].get(status, 0) + int(count)
    result = {}
    for name, counts in raw.items():
        delayed = counts.get("delayed", 0)
        ready = max(counts.get("todo", 0) - delayed, 0)
        paused = bool(counts.get("paused"))
        result[name] = QueueStats(
            waiting=0 if paused else ready,
            paused=ready if paused else 0,
            active=counts.get("doing", 0),
            delayed=delayed,
            completed=counts.get("succeeded", 0),
            failed=counts.get("failed", 0),
            cancelled=counts.get("cancelled", 0) + counts.get("aborted", 0),
            is_paused=paused,
        )
    return result


def _stats(names: list[str]) -> dict[str, QueueStats]:
    with connection.cursor() as cursor:
        cursor.execute(STATS_SQL)
        stats = _stats_from_rows(cursor.fetchall(), names)
    for name in names:
        row_queue = row_queue_get(name)
        if row_queue is not None:  # its work is its rows: they are what it counts
            stats[name] = _row_stats(row_queue.reader.counts(now=timezone.now()), paused=stats[name].is_paused)
    return stats


def _row_stats(counts: RowCounts, *, paused: bool) -> QueueStats:
    return QueueStats(
        waiting=0 if paused else counts.ready,
        paused=counts.ready if paused else 0,
        active=counts.active,
        delayed=counts.delayed,
        completed=counts.completed,
        failed=counts.failed,
        cancelled=counts.cancelled,
        is_paused=paused,
    )


def get_queue_stats(name: str) -> QueueStats:
    queue = queue_get(name)
    return _stats([queue.name])[queue.name]


def get_all_queue_stats() -> dict[str, QueueStats]:
    """The four product queues, keyed by name (the seed's ``getAllQueueStats()``)."""
    return _stats([queue.name for queue in product_queues()])


def job_counts_compact() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT kgc_job_counts_compact()")


# Upper bounds (seconds) of the run-time buckets of finished jobs; +Inf is implied. The
# worker's finish counts each run into the first bound it fits (kgc_job_duration_bounds(),
# which says the same).
DURATION_BOUNDS: tuple[float, ...] = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0)


@dataclass(frozen=True)
class OutcomeTotals:
    """One queue's attempts that ended, since the counters began: counts that only grow.

    ``durations`` holds, per bucket of ``DURATION_BOUNDS`` and one past the last, how many
    jobs that succeeded or failed for good ran that long as their worker measured it (each
    counted in one bucket, not cumulatively), and ``seconds`` their run times summed.
    """

    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    durations: tuple[int, ...] = (0,) * (len(DURATION_BOUNDS) + 1)
    seconds: float = 0.0


OUTCOME_TOTALS_SQL = """
SELECT queue_name, outcome, le, sum(jobs)::bigint, sum(seconds)::float8
  FROM kgc_joboutcomecount GROUP BY 1, 2, 3
"""


def duration_bucket(le: float) -> int:
    """The index in ``DURATION_BOUNDS`` of a stored bucket bound (``len``: past the last); a bound
    no longer declared goes to the first that holds it, so a count is never placed too low."""
    return next((index for index, bound in enumerate(DURATION_BOUNDS) if le <= bound), len(DURATION_BOUNDS))


def outcome_totals_fold(
    rows: Iterable[tuple[str, str, float | None, int, float]], *, names: list[str]
) -> dict[str, OutcomeTotals]:
    """Each queue's totals from the counter rows ``(queue, outcome, le, jobs, seconds)``; rows of
    other queues are left out."""
    counts = {name: dict.fromkeys(("succeeded", "failed", "retried"), 0) for name in names}
    durations = {name: [0] * (len(DURATION_BOUNDS) + 1) for name in names}
    seconds = dict.fromkeys(names, 0.0)
    for queue_name, outcome, le, jobs_count, run_time in rows:
        if queue_name not in counts:
            continue
        if outcome == "timed":
            durations[queue_name][duration_bucket(le if le is not None else math.inf)] += int(jobs_count)
            seconds[queue_name] += float(run_time)
        elif outcome in counts[queue_name]:
            counts[queue_name][outcome] += int(jobs_count)
    return {
        name: OutcomeTotals(**counts[name], durations=tuple(durations[name]), seconds=seconds[name]) for name in names
    }


def job_outcome_totals(names: list[str]) -> dict[str, OutcomeTotals]:
    """Each of these queues' attempts that ended, from the counters the jobs table's trigger
    keeps (``JobOutcomeCount``): never lowered by retention or cleanup. A row queue answers
    with its reader's totals of its items (its jobs, if any, are not counted)."""
    with connection.cursor() as cursor:
        cursor.execute(OUTCOME_TOTALS_SQL)
        totals = outcome_totals_fold(cursor.fetchall(), names=names)
    for name in names:
        if (row_queue := row_queue_get(name)) is not None:
            ended = row_queue.reader.totals()
            totals[name] = OutcomeTotals(succeeded=ended.completed, failed=ended.failed, retried=ended.retried)
    return totals


# --- Cleanup ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CleanupResult:
    completed: int = 0
    failed: int = 0


CLEANUP_BATCH_SQL = """
WITH victims AS (
    SELECT DISTINCT jobs.id
      FROM procrastinate_events AS events
      JOIN procrastinate_jobs AS jobs ON jobs.id = events.job_id
     WHERE events.type = ANY(%(event_types)s::procrastinate_job_event_type[])
       AND events.at < %(cutoff)s
       AND jobs.queue_name = %(queue)s
       AND jobs.status = ANY(%(statuses)s::procrastinate_job_status[])
       -- finished again since (a manual retry): its age counts from the last time
       AND NOT EXISTS (
            SELECT 1 FROM procrastinate_events AS later
             WHERE later.job_id = jobs.id AND later.at >= %(cutoff)s
       )
     LIMIT %(batch)s
)
DELETE FROM procrastinate_jobs WHERE id IN (SELECT id FROM victims)
"""

FINISHED_STATES = {
    # kind: (job statuses, events that mark the finish)
    "completed": (["succeeded", "cancelled", "aborted"], ["succeeded", "cancelled", "aborted"]),
    "failed": (["failed"], ["failed"]),
}


def cleanup_queue(
    name: str,
    *,
    completed_age: timedelta | None = None,
    failed_age: timedelta | None = None,
    now: datetime | None = None,
    batch_size: int = 5000,
) -> CleanupResult:
    """Delete this queue's jobs finished longer ago than the ages, with their events and
    failure records, in batches of ``batch_size`` (each its own short transaction, so a
    big cleanup never holds long locks). A ``None`` age keeps those jobs."""
    queue = queue_get(name)
    now = now or timezone.now()
    counts = {}
    for kind, age in (("completed", completed_age), ("failed", failed_age)):
        if age is not None and age < timedelta(0):
            raise JobError(f"{kind}_age must not be negative, got {age}")
        counts[kind] = 0 if age is None else _delete_finished(queue.name, kind, now - age, batch_size)
    return CleanupResult(**counts)


def _delete_finished(queue_name: str, kind: str, cutoff: datetime, batch_size: int) -> int:
    statuses, event_types = FINISHED_STATES[kind]
    deleted = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                CLEANUP_BATCH_SQL,
                {
                    "event_types": event_types,
                    "statuses": statuses,
                    "cutoff": cutoff,
                    "queue": queue_name,
                    "batch": batch_size,
                },
            )
            batch = cursor.rowcount
        deleted += batch
        if batch < batch_size:
            return deleted


def retention_apply(*, now: datetime | None = None) -> dict[str, CleanupResult]:
    """Apply each queue's retention from ``kgc/queues.py`` (the periodic retention task)."""
    return {
        queue.name: cleanup_queue(
            queue.name, completed_age=queue.retention.completed, failed_age=queue.retention.failed, now=now
        )
        for queue in QUEUES.values()
    }


# --- Failures and retries ---------------------------------------------------------------


@dataclass(frozen=True)
class FailedJob:
    id: int
    queue: str
    task: str
    args: dict[str, Any]
    attempts: int
    failures: list[JobFailure]

    @property
    def last_failure(self) -> JobFailure | None:
        return self.failures[0] if self.failures else None


def get_failed(queue: str | None = None, limit: int = 50) -> list[FailedJob]:
    """Failed jobs, newest first, each with every failed attempt (newest first)."""
    if queue is not None:
        queue = queue_get(queue).name
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT id, queue_name, task_name, args, attempts FROM procrastinate_jobs
                WHERE status = 'failed' AND (%(queue)s::varchar IS NULL OR queue_name = %(queue)s)
                ORDER BY id DESC LIMIT %(limit)s""",
            {"queue": queue, "limit": limit},
        )
        rows = cursor.fetchall()
    failures: dict[int, list[JobFailure]] = {row[0]: [] for row in rows}
    for failure in JobFailure.objects.filter(job_id__in=failures).order_by("-failed_at", "-id"):
        failures[failure.job_id].append(failure)
    return [
        # A raw cursor leaves jsonb as text.
        FailedJob(id=r[0], queue=r[1], task=r[2], args=json.loads(r[3]), attempts=r[4], failures=failures[r[0]])
        for r in rows
    ]


# A manually retried job starts a fresh set of attempts, as BullMQ's job.retry() does. It
# goes back without its queueing lock: the lock allows one waiting job, and another job
# under it (a newer refresh of the same tenant) may be waiting already.
RETRY_SQL = """
UPDATE procrastinate_jobs
   SET status = 'todo', attempts = 0, scheduled_at = NULL, worker_id = NULL, queueing_lock = NULL,
       abort_requested = false
 WHERE status = 'failed' AND {condition}
RETURNING id, queue_name, task_name, args
"""


@dataclass(frozen=True)
class RetriedJob:
    id: int
    queue: str
    task: str
    args: dict[str, Any]


def _retried(rows: list[tuple[Any, ...]]) -> list[RetriedJob]:
    """Tell the apps which jobs go back (inside the retry's transaction), and wake their workers.

    A task whose job leaves state behind (an email row marked failed) puts it back in
    a ``jobs_retried`` receiver, so the retried job does the work again.
    """
    retried = [RetriedJob(id=r[0], queue=r[1], task=r[2], args=json.loads(r[3])) for r in rows]
    if retried:
        signals.jobs_retried.send(sender=RetriedJob, jobs=retried)
    for name in {job.queue for job in retried}:
        transaction.on_commit(functools.partial(_notify_queue, name))
    return retried


def retry_job(job_id: int) -> int:
    """Put one failed job back in its queue. A running, waiting or finished job is refused."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(RETRY_SQL.format(condition="id = %s"), [job_id])
        row = cursor.fetchone()
        if row is None:
            cursor.execute("SELECT status FROM procrastinate_jobs WHERE id = %s", [job_id])
            found = cursor.fetchone()
            if found is None:
                raise JobNotFound(f"no job with id {job_id}")
            state = {"doing": "is running", "todo": "is already waiting"}.get(found[0], f"has status {found[0]}")
            raise JobNotRetryable(f"job {job_id} {state}; only failed jobs can be retried")
        _retried([row])
    return job_id


@dataclass(frozen=True)
class RetryHold:
    """Failed jobs that a bulk retry leaves out: those of ``task_name`` for which the SQL
    ``condition`` (over the ``procrastinate_jobs`` row) holds. An app registers one when
    running such a job again could do harm that only an operator can weigh (an email that
    may already have reached its recipient); ``retry_job`` of the single job still retries it.
    """

    name: str
    task_name: str
    condition: str
    description: str


_retry_holds: dict[str, RetryHold] = {}


def retry_hold_register(hold: RetryHold) -> None:
    """Make bulk retries leave out the failed jobs ``hold`` describes (from an app's ``ready()``)."""
    _retry_holds[hold.name] = hold


def retry_holds() -> list[RetryHold]:
    return list(_retry_holds.values())


def _held(hold: RetryHold) -> str:
    # Task names are declared in code, never taken from a request; quoted all the same.
    task = hold.task_name.replace("'", "''")
    return f"(procrastinate_jobs.task_name = '{task}' AND ({hold.condition}))"


_QUEUE_CONDITION = "(%(queue)s::varchar IS NULL OR queue_name = %(queue)s)"


@dataclass(frozen=True)
class BulkRetryResult:
    retried: int
    held: dict[str, int] = field(default_factory=dict)  # left out, by hold name (every hold, even at 0)


def failed_held_count(queue: str | None = None) -> dict[str, int]:
    """How many failed items of a queue (or of all queues) each hold keeps out of a bulk retry:
    jobs in one query; a row queue's items counted by its reader (its jobs, if any, not at all)."""
    if queue is not None:
        queue = queue_get(queue).name
    rows = {name: row_queue for name, row_queue in row_queues().items() if queue in (None, name)}
    held: dict[str, int] = {}
    holds = retry_holds()
    if holds and (queue is None or queue not in rows):
        counts = ", ".join(f"count(*) FILTER (WHERE {_held(hold)})" for hold in holds)
        with connection.cursor() as cursor:
            # The conditions are SQL that the apps declare in code (RetryHold), never input.
            cursor.execute(
                f"SELECT {counts} FROM procrastinate_jobs WHERE status = 'failed' AND {_QUEUE_CONDITION}"  # noqa: S608
                f" AND {_NOT_ROW_QUEUES}",
                {"queue": queue, "row_queues": list(row_queues())},
            )
            held = {hold.name: count for hold, count in zip(holds, cursor.fetchone(), strict=True)}
    for row_queue in rows.values():
        for name, count in row_queue.reader.failed_held().items():
            held[name] = held.get(name, 0) + count
    return held


_NOT_ROW_QUEUES = "NOT (queue_name = ANY(%(row_queues)s::varchar[]))"


def failed_jobs_retry(queue: str | None = None) -> BulkRetryResult:
    """Put the failed items of a queue (or of all queues) back, less those a hold keeps out;
    return how many went back and how many each hold kept out, counted in the same transaction.

    A row queue's failed items are its rows, which its reader puts back; the jobs of a row
    queue, if any, are left alone.
    """
    if queue is not None:
        queue = queue_get(queue).name
    rows = {name: row_queue for name, row_queue in row_queues().items() if queue in (None, name)}
    held_back = " AND ".join(f"NOT {_held(hold)}" for hold in retry_holds()) or "true"
    with transaction.atomic():
        held = failed_held_count(queue)
        retried = 0
        if queue is None or queue not in rows:
            with connection.cursor() as cursor:
                cursor.execute(
                    RETRY_SQL.format(condition=f"{_QUEUE_CONDITION} AND {_NOT_ROW_QUEUES} AND {held_back}"),
                    {"queue": queue, "row_queues": list(row_queues())},
                )
                retried = len(_retried(cursor.fetchall()))
        for row_queue in rows.values():
            retried += row_queue.reader.failed_retry()
            transaction.on_commit(functools.partial(_notify_queue, row_queue.name))
        return BulkRetryResult(retried=retried, held=held)


def retry_failed(queue: str | None = None) -> int:
    """Put every failed job of a queue (or of all queues) back; return how many.

    Failed jobs that a hold keeps out (``retry_hold_register``) stay failed: retry them
    one by one with ``retry_job``.
    """
    return failed_jobs_retry(queue).retried


def retry_held_job_ids(job_ids: list[int]) -> set[int]:
    """Which of these failed jobs a hold keeps out of a bulk retry."""
    if not job_ids or not retry_holds():
        return set()
    condition = " OR ".join(_held(hold) for hold in retry_holds())
    with connection.cursor() as cursor:
        # The conditions are SQL that the apps declare in code (RetryHold), never input.
        cursor.execute(
            f"SELECT id FROM procrastinate_jobs WHERE id = ANY(%(ids)s) AND status = 'failed' AND ({condition})",  # noqa: S608
            {"ids": job_ids},
        )
        return {row[0] for row in cursor.fetchall()}


# --- Fan-out ----------------------------------------------------------------------------


def jobs_fan_out(
    *,
    task_name: str,
    kwargs_by_tenant: dict[int, dict[str, Any]],
    priority: int | None = None,
    queueing_lock: str | None = None,
) -> list[int]:
    """Defer one job per tenant in one transaction (all or none); return the job ids.

    With a ``queueing_lock`` template (``"...:{tenant_id}"``) a tenant that already has
    such a job waiting keeps it instead of getting a second.
    """
    with transaction.atomic():
        return [
            job_defer(
                task_name=task_name,
                kwargs={"tenant_id": tenant_id, **kwargs},
                priority=priority,
                queueing_lock=queueing_lock.format(tenant_id=tenant_id) if queueing_lock else None,
            )[0]
            for tenant_id, kwargs in kwargs_by_tenant.items()
        ]
