"""Running one claimed job and turning what happened into its outcome.

A task declared ``async def`` runs on the worker's event loop; any other runs in the
worker's thread pool, on Django's database connection of that thread. With tracing on,
each run has its span (``kgc/queue/tracing.py``), current while the task runs. The outcome
(succeeded, failed, back to the queue for a retry, aborted) is not written here: it
goes to the completer, which writes many in one statement (``kgc/queue/completer.py``).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connections
from procrastinate import App, exceptions, job_context
from procrastinate import jobs as jobs_module

from kgc.queue import tracing
from kgc.queue.results import text_storable

logger = logging.getLogger("kgc.jobs")

# A thread's database connection idle for longer than this is checked before its next
# job (Django's health check: one round trip). A busy thread's is not: after a database
# restart its first query fails, the job is retried, and the broken connection is closed.
IDLE_CHECK_AFTER = 10.0


@dataclass(frozen=True, slots=True)
class Claim:
    """A job this worker claimed, with the fencing token its outcome must carry: the
    registration it was claimed under and the attempt count it was claimed with."""

    job: jobs_module.Job
    worker_id: int

    @property
    def attempts(self) -> int:
        return self.job.attempts

    @property
    def token(self) -> tuple[int, int, int]:
        return (self.job.id or 0, self.worker_id, self.job.attempts)


@dataclass(frozen=True, slots=True)
class Failure:
    attempt: int
    exception_type: str
    message: str
    traceback: str
    failed_at: datetime


@dataclass(slots=True)
class Outcome:
    claim: Claim
    # succeeded, failed, aborted, todo (back to the queue for a retry), unknown (a task this
    # worker does not know: ``sql.PUT_BACK_UNKNOWN``); abandoned: never written
    status: str
    retry_at: datetime | None = None
    failure: Failure | None = None
    result: Any = None
    duration: float = 0.0


# A run's outcome as its span names it (messaging.procrastinate.job.outcome).
OUTCOME_NAMES = {"todo": "retry", "unknown": "unknown_task"}


def failure_describe(exc: BaseException, *, attempt: int, now: datetime) -> Failure:
    """Why an attempt failed, as text PostgreSQL can store (whatever the exception carries)."""
    return Failure(
        attempt=attempt,
        exception_type=text_storable(f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins.")),
        message=text_storable(str(exc)[:10_000]),
        traceback=text_storable("".join(traceback.format_exception(exc))[-20_000:]),
        failed_at=now,
    )


def log_fields(job: jobs_module.Job) -> dict[str, Any]:
    return {
        "queue": job.queue,
        "task": job.task_name,
        "job_id": job.id,
        "tenant_id": job.task_kwargs.get("tenant_id"),
        "attempt": job.attempts + 1,
    }


@dataclass
class _ThreadState:
    last_job_end: float = field(default_factory=time.monotonic)


class JobRunner:
    """Runs claimed jobs of one worker process; ``abort_requested`` marks running ones to abort."""

    def __init__(self, app: App, *, executor: Executor, worker_name: str, queues: list[str]) -> None:
        self.app = app
        self.executor = executor
        self.worker_name = worker_name
        self.queues = queues
        self.aborting: set[int] = set()
        self.abandoning: set[int] = set()  # given up at the shutdown timeout: put back, no outcome
        self._async_tasks: dict[int, asyncio.Task[Any]] = {}
        self._sync_task_cache: dict[str, bool] = {}

    def abort(self, job_id: int) -> None:
        """An operator asked to abort a running job: an async task is cancelled; a sync task
        sees ``context.should_abort()`` and stops itself."""
        self.aborting.add(job_id)
        task = self._async_tasks.get(job_id)
        if task is not None:
            task.cancel()

    def abandon(self, job_id: int) -> None:
        """The worker gives up on a running job at the shutdown timeout and puts it back: an async
        task is cancelled, a sync task sees ``context.should_abort()`` (reason: shutdown)."""
        self.abandoning.add(job_id)
        task = self._async_tasks.get(job_id)
        if task is not None:
            task.cancel()

    def _is_async(self, task: Any) -> bool:
        known = self._sync_task_cache.get(task.name)
        if known is None:
            known = self._sync_task_cache[task.name] = inspect.iscoroutinefunction(task.func)
        return known

    async def run(self, claim: Claim) -> Outcome:
        job = claim.job
        carrier = None
        if tracing.TRACE_CONTEXT_KEY in job.task_kwargs:  # the task never sees it
            kwargs, carrier = tracing.kwargs_split(job.task_kwargs)
            job = job.evolve(task_kwargs=kwargs)
        if not tracing.enabled():
            return await self._run(claim, job)
        with tracing.run_span(
            queue=job.queue,
            task_name=job.task_name,
            job_id=job.id,
            attempt=job.attempts + 1,
            carrier=carrier,
            tenant_id=job.task_kwargs.get("tenant_id"),
        ) as span:
            outcome = await self._run(claim, job)
            tracing.run_ended(span, outcome=OUTCOME_NAMES.get(outcome.status, outcome.status), failure=outcome.failure)
            return outcome

    async def _run(self, claim: Claim, job: jobs_module.Job) -> Outcome:
        fields = log_fields(job)
        verbose = logger.isEnabledFor(logging.INFO)  # two log lines a job: skip building them when off
        if verbose:
            logger.info("job started", extra={**fields, "event": "job_started"})
        started = time.monotonic()
        task = self.app.tasks.get(job.task_name)
        if task is None:
            return self._unknown(claim, started)
        try:
            args = [self._context(job)] if task.pass_context else []
            if self._is_async(task):
                result = await self._run_async(job, task, args)
            else:
                loop = asyncio.get_running_loop()
                call = functools.partial(_call_sync, task, args, job.task_kwargs)
                if tracing.enabled():  # the run's span is the parent of what the task does in its thread
                    call = functools.partial(contextvars.copy_context().run, call)
                result = await loop.run_in_executor(self.executor, call)
        except BaseException as exc:  # the task's failure, whatever it is, becomes the job's outcome
            if job.id in self.abandoning:
                return self._abandoned(claim, exc, fields)
            outcome = self._failed(claim, task, exc)
            outcome.duration = time.monotonic() - started
            self._log_failure(outcome, exc, fields)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            return outcome
        finally:
            self.aborting.discard(job.id or 0)
            self.abandoning.discard(job.id or 0)
        duration = time.monotonic() - started
        if verbose:
            logger.info(
                "job succeeded", extra={**fields, "event": "job_succeeded", "duration_ms": round(duration * 1000, 1)}
            )
        return Outcome(claim=claim, status="succeeded", result=result, duration=duration)

    async def _run_async(self, job: jobs_module.Job, task: Any, args: list[Any]) -> Any:
        job_id = job.id or 0
        runner = asyncio.ensure_future(task(*args, **job.task_kwargs))
        self._async_tasks[job_id] = runner
        try:
            return await runner
        finally:
            del self._async_tasks[job_id]

    def _context(self, job: jobs_module.Job) -> job_context.JobContext:
        job_id = job.id or 0
        return job_context.JobContext(
            app=self.app,
            worker_name=self.worker_name,
            worker_queues=self.queues,
            job=job,
            start_timestamp=time.time(),
            abort_reason=lambda: (
                job_context.AbortReason.USER_REQUEST
                if job_id in self.aborting
                else job_context.AbortReason.SHUTDOWN
                if job_id in self.abandoning
                else None
            ),
        )

    def _unknown(self, claim: Claim, started: float) -> Outcome:
        """A job of a task this worker does not know (an older worker during a rolling deploy):
        no failure of the job; the completer puts it back for a worker that knows the task."""
        exc = exceptions.TaskNotFound(f"no task named {claim.job.task_name!r} in this worker ({_where()})")
        now = datetime.now(tz=UTC)
        failure = failure_describe(exc, attempt=claim.job.attempts + 1, now=now)
        return Outcome(claim=claim, status="unknown", failure=failure, duration=time.monotonic() - started)

    def _abandoned(self, claim: Claim, exc: BaseException, fields: dict[str, Any]) -> Outcome:
        """A job stopped because the worker gave up on it: not a failure of the job, and no
        outcome to write (the worker puts it back)."""
        logger.warning(
            f"job stopped at the shutdown timeout ({type(exc).__name__}); it goes back to its queue",
            extra={**fields, "event": "job_abandoned"},
        )
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise exc
        return Outcome(claim=claim, status="abandoned")

    def _failed(self, claim: Claim, task: Any, exc: BaseException) -> Outcome:
        job = claim.job
        now = datetime.now(tz=UTC)
        failure = failure_describe(exc, attempt=job.attempts + 1, now=now)
        if isinstance(exc, exceptions.JobAborted | asyncio.CancelledError):
            return Outcome(claim=claim, status="aborted", failure=failure)
        retry = task.get_retry_exception(exception=exc, job=job) if task is not None else None
        decision = retry.retry_decision if retry is not None else None
        if decision is None:
            return Outcome(claim=claim, status="failed", failure=failure)
        return Outcome(claim=claim, status="todo", retry_at=decision.retry_at, failure=failure)

    def _log_failure(self, outcome: Outcome, exc: BaseException, fields: dict[str, Any]) -> None:
        will_retry = outcome.status == "todo"
        event = {"todo": "job_retry", "aborted": "job_aborted"}.get(outcome.status, "job_failed")
        title = {"todo": "job failed, will retry", "aborted": "job aborted"}.get(outcome.status, "job failed")
        logger.log(
            logging.WARNING if will_retry else logging.ERROR,
            f"{title}: {type(exc).__name__}: {exc}",
            extra={
                **fields,
                "event": event,
                "duration_ms": round(outcome.duration * 1000, 1),
                "error": type(exc).__name__,
            },
        )


def _where() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


_thread_state = threading.local()


def _call_sync(task: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Run a sync task in a pool thread, tending Django's connection of that thread.

    No per-job health check: the connection is checked only after it sat idle, and is
    closed after a job that left it broken, in a transaction, or past its maximum age.
    """
    state: _ThreadState | None = getattr(_thread_state, "state", None)
    if state is None:
        state = _thread_state.state = _ThreadState()
    if time.monotonic() - state.last_job_end > IDLE_CHECK_AFTER:
        for conn in connections.all(initialized_only=True):
            conn.health_check_done = False  # type: ignore[attr-defined] # Django checks it on first use
    try:
        return task(*args, **kwargs)
    finally:
        for conn in connections.all(initialized_only=True):
            if conn.connection is None:
                continue
            if conn.in_atomic_block:
                conn.close()  # a transaction left open by the task: never reuse it
            elif conn.errors_occurred or not conn.get_autocommit():
                conn.close_if_unusable_or_obsolete()
            elif conn.close_at is not None and time.monotonic() >= conn.close_at:
                conn.close()
            if settings.DEBUG:
                conn.queries_log.clear()
        state.last_job_end = time.monotonic()
