"""procrastinate, upgraded with the queue layer.

procrastinate's Django integration builds its ``App`` itself; ``on_app_ready`` (named by
PROCRASTINATE_ON_APP_READY) is its hook, and upgrades that app in place so that both
entry points, ``manage.py runworkers`` and ``manage.py procrastinate worker``, get:

* a fetch that honours pause and the global rate limits (``kgc_fetch_job``);
* a failure record for every failed attempt, and one log line per job start and end;
* crash recovery: jobs of a worker that stopped sending heartbeats are put back
  (or failed, once out of attempts) by the live workers within seconds;
* graceful shutdown: running jobs get ``KGC_SHUTDOWN_TIMEOUT`` seconds to finish,
  and any still running after that are put back in their queue before exit;
* database connection pools sized to the concurrency.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from django.conf import settings
from procrastinate import App, exceptions, job_context, manager, psycopg_connector, worker
from procrastinate import jobs as jobs_module
from procrastinate import utils as utils_module
from procrastinate.contrib.django import django_connector, utils
from procrastinate.contrib.django import settings as procrastinate_settings
from procrastinate.contrib.django.db_cleanup import DjangoApp

from kgc.queues import QUEUES, rate_limits
from kgc.retry import QueueRetryStrategy

logger = logging.getLogger("kgc.jobs")

HEARTBEAT_INTERVAL = 5.0  # seconds between a worker's heartbeats
STALLED_AFTER = 20.0  # a worker silent this long is dead; its jobs are rescued
MAINTENANCE_INTERVAL = 5.0  # how often the lead worker rescues jobs and compacts counts
FETCH_POLLING_INTERVAL = 1.0  # pause, resume and rate-limit windows are seen within this

FETCH_JOB_SQL = """
SELECT id, status, task_name, priority, lock, queueing_lock, args, scheduled_at, queue_name, attempts, worker_id
  FROM kgc_fetch_job(%(queues)s::varchar[], %(worker_id)s, %(limited)s::varchar[], %(limits)s::int[],
                     %(windows)s::float8[])
"""

# A job still running at the shutdown timeout goes back to its queue as a new attempt,
# without its queueing lock (another job under it may be waiting), unless it was aborted.
REQUEUE_SQL = """
UPDATE procrastinate_jobs
   SET status = CASE WHEN abort_requested THEN 'failed' ELSE 'todo' END::procrastinate_job_status,
       attempts = attempts + 1, worker_id = NULL, queueing_lock = NULL
 WHERE id = %(job_id)s AND status = 'doing'
"""

RECORD_FAILURE_SQL = """
INSERT INTO kgc_jobfailure
       (job_id, queue_name, task_name, attempt, exception_type, message, traceback, will_retry, failed_at)
VALUES (%(job_id)s, %(queue)s, %(task)s, %(attempt)s, %(exception_type)s, %(message)s, %(traceback)s,
        %(will_retry)s, now())
"""

# Jobs left "doing" by a worker that stopped sending heartbeats (killed, machine lost)
# go back to their queue as a new attempt, or fail once out of attempts; each gets a
# failure record. One statement, rows locked with SKIP LOCKED: two live workers
# rescuing at once cannot both take the same job.
RESCUE_STALLED_SQL = """
WITH stalled AS (
    SELECT job.id, job.queue_name, job.attempts
      FROM procrastinate_jobs AS job
      LEFT JOIN procrastinate_workers AS owner ON owner.id = job.worker_id
     WHERE job.status = 'doing'
       AND (owner.id IS NULL OR owner.last_heartbeat < now() - make_interval(secs => %(stalled_after)s))
       FOR UPDATE OF job SKIP LOCKED
), policy AS (
    SELECT * FROM unnest(%(queues)s::varchar[], %(max_attempts)s::int[]) AS p(queue_name, max_attempts)
), rescued AS (
    UPDATE procrastinate_jobs AS job
       SET status = CASE WHEN stalled.attempts + 1 < coalesce(policy.max_attempts, 1) AND NOT job.abort_requested
                         THEN 'todo' ELSE 'failed' END::procrastinate_job_status,
           attempts = job.attempts + 1,
           worker_id = NULL,
           -- Back in the queue without its queueing lock: another job under the same lock
           -- may be waiting already, and the lock allows one waiting job.
           queueing_lock = NULL
      FROM stalled LEFT JOIN policy ON policy.queue_name = stalled.queue_name
     WHERE job.id = stalled.id
 RETURNING job.id, job.queue_name, job.task_name, job.status, stalled.attempts + 1 AS attempt
)
INSERT INTO kgc_jobfailure
       (job_id, queue_name, task_name, attempt, exception_type, message, traceback, will_retry, failed_at)
SELECT id, queue_name, task_name, attempt, 'WorkerLost',
       'the worker running this job stopped sending heartbeats (killed or lost)', '', status = 'todo', now()
  FROM rescued
RETURNING job_id, queue_name, will_retry
"""


@functools.cache
def rate_limit_arguments() -> dict[str, list[Any]]:
    limits = sorted(rate_limits().items())  # sorted: kgc_fetch_job locks queues in this order
    return {
        "limited": [name for name, _ in limits],
        "limits": [limit.limit for _, limit in limits],
        "windows": [limit.per.total_seconds() for _, limit in limits],
    }


class KgcJobManager(manager.JobManager):
    def __init__(self, connector: Any, django_connector: django_connector.DjangoConnector) -> None:
        super().__init__(connector)
        self.django_connector = django_connector

    async def fetch_job(self, queues: Iterable[str] | None, worker_id: int) -> jobs_module.Job | None:
        row = await self.connector.execute_query_one_async(
            query=FETCH_JOB_SQL,
            # "All queues" is every declared one: kgc_fetch_job looks each up over its index.
            queues=list(queues) if queues else list(QUEUES),
            worker_id=worker_id,
            **rate_limit_arguments(),
        )
        if row["id"] is None:
            return None
        return jobs_module.Job.from_row(row)

    def batch_defer_jobs(self, jobs: list[jobs_module.Job], connection: Any | None = None) -> list[jobs_module.Job]:
        """Synchronous defers always go through Django's connection of the calling thread.

        A worker swaps its own pool in as the app's connector; without this, a job deferred
        by a task (a fan-out, the email of a new notification) would commit on its own,
        before the task's transaction, and its worker could look for rows not yet there.
        """
        if connection is not None:
            return super().batch_defer_jobs(jobs, connection=connection)
        try:
            results = self.django_connector.execute_query_all(**self._defer_jobs_query_kwargs(jobs=jobs))
        except exceptions.UniqueViolation as exc:
            self._raise_already_enqueued(exc=exc, queueing_lock=exc.queueing_lock)
        return [
            job.evolve(id=results[index]["id"], status=jobs_module.Status.TODO.value) for index, job in enumerate(jobs)
        ]


def default_pool_size(concurrency: int, workers: int = 1) -> int:
    """Connections one worker process needs: one per running job's fetch/finish, plus the
    LISTEN connection, the heartbeat and the abort/maintenance polls of each worker."""
    return concurrency + 3 * workers


def worker_connector(*, concurrency: int, workers: int = 1) -> psycopg_connector.PsycopgConnector:
    size = default_pool_size(concurrency, workers)
    return psycopg_connector.PsycopgConnector(
        kwargs=utils.connector_params(procrastinate_settings.settings.DATABASE_ALIAS),
        min_size=min(size, workers + 1),
        max_size=size,
    )


class KgcDjangoConnector(django_connector.DjangoConnector):
    def get_worker_connector(self) -> psycopg_connector.PsycopgConnector:
        # ``manage.py procrastinate worker`` may run any queues, with their summed concurrency
        # (KgcApp._worker): size for all of them.
        return worker_connector(concurrency=sum(q.concurrency for q in QUEUES.values()))


def _log_fields(job: jobs_module.Job) -> dict[str, Any]:
    return {
        "queue": job.queue,
        "task": job.task_name,
        "job_id": job.id,
        "tenant_id": job.task_kwargs.get("tenant_id"),
        "attempt": job.attempts + 1,
    }


async def job_lifecycle(
    call_next: Callable[[], Awaitable[Any]], context: job_context.JobContext, running_worker: worker.Worker
) -> Any:
    """Worker middleware: log each job's start and end, and record why a failed attempt failed."""
    job = context.job
    fields = _log_fields(job)
    logger.info("job started", extra={**fields, "event": "job_started"})
    started = time.monotonic()
    try:
        result = await call_next()
    except Exception as exc:
        duration_ms = round((time.monotonic() - started) * 1000, 1)
        task = running_worker.app.tasks.get(job.task_name)
        strategy = getattr(task, "retry_strategy", None)
        will_retry = isinstance(strategy, QueueRetryStrategy) and strategy.will_retry(exc, job)
        await job_failure_record(running_worker.app.job_manager.connector, job, exc, will_retry=will_retry)
        event = "job_retry" if will_retry else "job_failed"
        logger.log(
            logging.WARNING if will_retry else logging.ERROR,
            f"job {'failed, will retry' if will_retry else 'failed'}: {type(exc).__name__}: {exc}",
            extra={**fields, "event": event, "duration_ms": duration_ms, "error": type(exc).__name__},
        )
        raise
    duration_ms = round((time.monotonic() - started) * 1000, 1)
    logger.info("job succeeded", extra={**fields, "event": "job_succeeded", "duration_ms": duration_ms})
    return result


async def job_failure_record(connector: Any, job: jobs_module.Job, exc: BaseException, *, will_retry: bool) -> None:
    # Written on the worker's own connection, outside the task's transaction, so the
    # record survives the task's rollback.
    await connector.execute_query_async(
        query=RECORD_FAILURE_SQL,
        job_id=job.id,
        queue=job.queue,
        task=job.task_name,
        attempt=job.attempts + 1,
        exception_type=f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins."),
        message=str(exc)[:10_000],
        traceback="".join(traceback.format_exception(exc))[-20_000:],
        will_retry=will_retry,
    )


class KgcWorker(worker.Worker):
    """procrastinate's worker, plus crash recovery and a bounded graceful shutdown.

    ``lead`` workers run the scheduler (periodic deferrer) and the maintenance loop;
    ``runworkers`` makes one of its per-queue workers the lead. Several leads across
    machines are safe: periodic jobs are de-duplicated per tick in the database and
    the rescue query skips rows another worker holds.
    """

    def __init__(self, *args: Any, lead: bool = True, exit_on_abandon: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("fetch_job_polling_interval", FETCH_POLLING_INTERVAL)
        kwargs.setdefault("update_heartbeat_interval", HEARTBEAT_INTERVAL)
        kwargs.setdefault("stalled_worker_timeout", STALLED_AFTER)
        kwargs.setdefault("shutdown_graceful_timeout", float(settings.KGC_SHUTDOWN_TIMEOUT))
        super().__init__(*args, **kwargs)
        self.lead = lead
        self.exit_on_abandon = exit_on_abandon
        self.abandoned_job_ids: list[int] = []
        self._drain_timeout = float(self.shutdown_graceful_timeout or 0.0)

    async def _periodic_deferrer(self) -> None:
        if self.lead:
            await super()._periodic_deferrer()

    def _start_side_tasks(self) -> list[asyncio.Task[Any]]:
        side_tasks = super()._start_side_tasks()
        if self.lead:
            side_tasks.append(asyncio.create_task(self._maintenance_loop(), name="kgc_maintenance"))
        return side_tasks

    async def _maintenance_loop(self) -> None:
        while True:
            try:
                await self.maintenance_once()
            except Exception:  # a database blip must not stop the worker; try again next round
                logger.exception("queue maintenance failed", extra={"event": "maintenance_failed"})
            await asyncio.sleep(MAINTENANCE_INTERVAL)

    async def maintenance_once(self) -> None:
        connector = self.app.job_manager.connector
        await self.app.job_manager.prune_stalled_workers(self.stalled_worker_timeout)
        rows = await connector.execute_query_all_async(
            query=RESCUE_STALLED_SQL,
            stalled_after=self.stalled_worker_timeout,
            queues=list(QUEUES),
            max_attempts=[q.retry.max_attempts for q in QUEUES.values()],
        )
        for row in rows:
            logger.warning(
                "job of a lost worker " + ("put back in its queue" if row["will_retry"] else "failed: out of attempts"),
                extra={"event": "job_rescued", "job_id": row["job_id"], "queue": row["queue_name"]},
            )
        await connector.execute_query_async(query="SELECT kgc_job_counts_compact()")

    async def _abort_running_jobs(self) -> None:
        """Jobs still running when the shutdown timeout ends go back to their queue.

        A sync task cannot be interrupted in its thread, so rather than wait for it
        forever the job is requeued (it will run again: at least once) and the process
        exits without waiting for the thread.
        """
        connector = self.app.job_manager.connector
        for context in list(self._running_jobs.values()):
            job = context.job
            await connector.execute_query_async(query=REQUEUE_SQL, job_id=job.id)
            await job_failure_record(
                connector,
                job,
                TimeoutError(f"still running {self._drain_timeout:.0f} s after shutdown began"),
                will_retry=True,
            )
            self.abandoned_job_ids.append(job.id or 0)
            logger.warning(
                "job put back: still running at shutdown timeout", extra={**_log_fields(job), "event": "job_requeued"}
            )

    async def _shutdown(self, side_tasks: list[asyncio.Task[Any]]) -> None:
        """Drain with the heartbeat still beating, then shut down as procrastinate does.

        procrastinate stops the heartbeat before it waits for running jobs; a worker that
        drains for longer than STALLED_AFTER would then look dead, and another worker would
        rescue (and run a second time) the jobs it is still finishing.
        """
        heartbeat = [task for task in side_tasks if task.get_name() == "update_heartbeats"]
        await utils_module.cancel_and_capture_errors([task for task in side_tasks if task not in heartbeat])
        self._drain_timeout = self.shutdown_graceful_timeout or 0.0
        if self._running_jobs:
            await asyncio.wait(list(self._running_jobs), timeout=self.shutdown_graceful_timeout)
        await utils_module.cancel_and_capture_errors(heartbeat)
        # Already waited: procrastinate's own wait must not add another timeout.
        self.shutdown_graceful_timeout = 0
        await super()._shutdown(side_tasks=[])

    async def run(self) -> None:
        await super().run()
        if self.abandoned_job_ids and self.exit_on_abandon:
            logging.shutdown()
            os._exit(0)


class KgcApp(DjangoApp):
    def _worker(self, **kwargs: Any) -> worker.Worker:
        options = {**self.worker_defaults, **{key: value for key, value in kwargs.items() if value is not None}}
        queues = options.get("queues")
        if kwargs.get("concurrency") is None and queues and all(name in QUEUES for name in queues):
            # ``procrastinate worker -q email`` runs with the queue's declared concurrency.
            options["concurrency"] = sum(QUEUES[name].concurrency for name in queues)
        return KgcWorker(app=self, **options)


def on_app_ready(app: App) -> None:
    """Hook named by PROCRASTINATE_ON_APP_READY: upgrade procrastinate's app in place."""
    app.__class__ = KgcApp
    app.connector = KgcDjangoConnector(alias=app.connector.alias)  # type: ignore[attr-defined]
    app.job_manager = KgcJobManager(connector=app.connector, django_connector=app.connector)
    middleware = list(app.worker_defaults.get("worker_middleware") or [])
    app.worker_defaults["worker_middleware"] = [job_lifecycle, *middleware]
