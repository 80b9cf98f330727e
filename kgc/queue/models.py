"""State the queue layer keeps next to procrastinate's tables.

All of it lives in PostgreSQL so that every worker process on every machine sees the
same pause flags, the same rate-limit window and the same failure history.
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from procrastinate.contrib.django.models import ProcrastinateJob


class QueuePause(models.Model):
    """A row here means the queue is paused: workers start none of its jobs."""

    queue_name = models.CharField(max_length=128, primary_key=True)
    paused_at = models.DateTimeField(auto_now_add=True)
    paused_by = models.CharField(max_length=150, blank=True)

    class Meta:
        # Its admin changelist is the queue dashboard.
        verbose_name = "queue"
        verbose_name_plural = "queue dashboard"

    def __str__(self) -> str:
        return f"{self.queue_name} (paused)"


class RateLimitSlot(models.Model):
    """How many jobs of a rate-limited queue started in one second (``slot``).

    ``kgc_fetch_job`` sums a queue's slots over its window under an advisory lock before it
    claims a job, so the limit holds across all workers; slots older than the window are
    deleted as it goes. Per-second slots keep that sum to about 60 rows however high the
    limit, where a row per start would make every fetch count the whole window's starts.
    """

    queue_name = models.CharField(max_length=128)
    slot = models.DateTimeField()
    starts = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["queue_name", "slot"], name="kgc_ratelimit_queue_slot")]

    def __str__(self) -> str:
        return f"{self.queue_name} at {self.slot:%H:%M:%S}: {self.starts} starts"


class JobCountDelta(models.Model):
    """Changes to the number of jobs per (queue, status), written by triggers on the jobs table.

    Counting a million-row jobs table on every stats call is too slow; summing this small
    table is not. Workers compact it (``kgc_job_counts_compact``) every few seconds.
    """

    queue_name = models.CharField(max_length=128)
    status = models.CharField(max_length=32)
    delta = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.queue_name}/{self.status}: {self.delta:+d}"


class JobOutcomeCount(models.Model):
    """Attempts that ended, per queue and outcome, and run times: the ``*_total`` series of ``/metrics``.

    The jobs table's update trigger (migration 0009) counts each attempt as it ends, one row
    per statement and (queue, outcome): a job leaving ``doing`` as succeeded, failed (or
    aborted), or back to ``todo`` with its attempt counted (a retry). The worker's batch
    finish (``sql.FINISH``) adds ``timed`` rows: the jobs that succeeded or failed for good,
    per run-time bucket, with the run time the worker measured. Retention and cleanup delete
    jobs, never these rows, so the sums only grow; compaction (``kgc_job_counts_compact``)
    folds them into one row per (queue, outcome, bucket).
    """

    class Outcome(models.TextChoices):
        SUCCEEDED = "succeeded"
        FAILED = "failed"  # for good: out of attempts, a permanent error, or aborted
        RETRIED = "retried"  # a failed attempt that goes back to its queue
        TIMED = "timed"  # runs that succeeded or failed for good, per run-time bucket

    queue_name = models.CharField(max_length=128)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    le = models.FloatField(
        null=True,
        help_text="Timed rows: the upper bound (seconds) of their run-time bucket "
        "(kgc_job_duration_bounds(), +Infinity past the last).",
    )
    jobs = models.BigIntegerField()
    seconds = models.FloatField(default=0.0, help_text="Timed rows: their run times, summed.")

    def __str__(self) -> str:
        return f"{self.queue_name}/{self.outcome}: {self.jobs}"


class JobFailure(models.Model):
    """One failed attempt of a job: why it failed, so an operator can see it and act."""

    # The foreign key is declared in SQL (migration 0002) with ON DELETE CASCADE, so that
    # deleting jobs (cleanup_queue, procrastinate's own pruning) takes their failures along.
    job = models.ForeignKey(ProcrastinateJob, on_delete=models.DO_NOTHING, related_name="failures", db_constraint=False)
    queue_name = models.CharField(max_length=128)
    task_name = models.CharField(max_length=128)
    attempt = models.PositiveIntegerField(help_text="1 for the first run.")
    exception_type = models.CharField(max_length=255)
    message = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    will_retry = models.BooleanField(default=False)
    failed_at = models.DateTimeField()

    class Meta:
        ordering = ["-failed_at"]
        indexes = [
            models.Index(fields=["job", "attempt"], name="kgc_failure_job_idx"),
            models.Index(fields=["queue_name", "failed_at"], name="kgc_failure_queue_idx"),
        ]

    def __str__(self) -> str:
        return f"job {self.job_id} attempt {self.attempt}: {self.exception_type}"


class WorkerProcess(models.Model):
    """One running worker process, next to procrastinate's ``procrastinate_workers`` row of the same id.

    Written by the worker at registration and with every heartbeat; deleted with the
    procrastinate row (the foreign key is declared in SQL with ON DELETE CASCADE), so a
    worker declared dead disappears from here too. ``duties`` holds each supervised
    duty's state as the worker last reported it, for the console and the health checks:
    ``{"listener": {"state": "running", "restarts": 0, "failing_since": null, "last_error": ""}}``.
    """

    worker_id = models.BigIntegerField(primary_key=True)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    queues = ArrayField(models.CharField(max_length=128))
    concurrency = models.JSONField(default=dict, help_text="Jobs run at once per queue in this process.")
    started_at = models.DateTimeField()
    duties = models.JSONField(default=dict)
    reported_at = models.DateTimeField(help_text="When the duties were last written (with the heartbeat).")

    class Meta:
        verbose_name = "worker process"

    def __str__(self) -> str:
        return f"worker {self.worker_id} ({self.host}:{self.pid})"


class Leadership(models.Model):
    """A lease held by one live worker process, which runs the singleton duties while it holds it.

    The holder renews ``expires_at`` every few seconds; any other worker may take the
    lease once it has expired (see ``kgc/queue/leader.py``).
    """

    name = models.CharField(max_length=64, primary_key=True)
    worker_id = models.BigIntegerField()
    elected_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name}: worker {self.worker_id} until {self.expires_at:%H:%M:%S}"


class SchedulerTick(models.Model):
    """When the scheduler last checked its schedules (and which worker ran it), and which ticks
    it skipped, for health checks."""

    name = models.CharField(max_length=64, primary_key=True)
    ticked_at = models.DateTimeField()
    worker_id = models.BigIntegerField()
    # A default in the database too: a worker of the previous release records its checks without it.
    missed = models.JSONField(
        default=dict,
        db_default={},
        help_text="Schedules whose latest tick the scheduler skipped (too late to catch up), each with "
        "that tick's Unix time, until a later tick of theirs is deferred.",
    )

    def __str__(self) -> str:
        return f"{self.name} ticked at {self.ticked_at:%H:%M:%S} by worker {self.worker_id}"


class JobResult(models.Model):
    """What a job that succeeded returned, for the console's job page.

    Written by a worker middleware (``kgc.results``) after the task returns; a value too
    big to be worth showing is cut (``kgc.results.RESULT_MAX_CHARS``).
    """

    # The foreign key is declared in SQL (migration 0005) with ON DELETE CASCADE: deleting
    # jobs (cleanup, retention) takes their results along.
    job = models.OneToOneField(
        ProcrastinateJob, on_delete=models.DO_NOTHING, primary_key=True, related_name="result", db_constraint=False
    )
    value = models.JSONField(null=True)
    recorded_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"result of job {self.job_id}"
