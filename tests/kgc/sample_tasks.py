"""Tasks used by the queue-layer tests, loaded by test workers via KGC_EXTRA_TASK_MODULES."""

from __future__ import annotations

import asyncio
import os
import time

from django.db import transaction
from procrastinate import JobContext
from procrastinate.contrib.django import app

from kgc.queue import jobs
from kgc.queues import QUEUES


def _declare(queue: str) -> None:
    slug = queue.replace("-", "_")

    @jobs.task(queue=queue, name=f"tests.noop_{slug}")
    def noop(**kwargs: object) -> None:
        return None

    @jobs.task(queue=queue, name=f"tests.sleep_{slug}", pass_context=True)
    def sleep(context: JobContext, seconds: float, first_attempt_only: bool = False, **kwargs: object) -> int:
        if not (first_attempt_only and context.job.attempts > 0):
            time.sleep(seconds)
        return os.getpid()


for _queue in QUEUES:
    _declare(_queue)


@jobs.task(queue="maintenance", name="tests.wait_async", pass_context=True)
async def wait_async(context: JobContext, seconds: float, first_attempt_only: bool = False) -> int:
    """An async task: the worker cancels it (rather than waits for it) when it gives up on it."""
    if not (first_attempt_only and context.job.attempts > 0):
        await asyncio.sleep(seconds)
    return os.getpid()


@jobs.task(queue="maintenance", name="tests.fail_permanently")
def fail_permanently(reason: str = "bad payload") -> None:
    raise ValueError(reason)


@jobs.task(queue="maintenance", name="tests.fail_transiently")
def fail_transiently() -> None:
    raise ConnectionError("upstream dropped the connection")


if os.environ.get("KGC_TEST_CRON"):

    @app.periodic(cron=os.environ["KGC_TEST_CRON"], periodic_id="test")
    @jobs.task(queue="maintenance", name="tests.tick")
    def tick(timestamp: int) -> int:
        return timestamp


@jobs.task(queue="maintenance", name="tests.defer_then_fail")
def defer_then_fail() -> None:
    """Defers a follow-up job inside a transaction that then rolls back."""
    with transaction.atomic():
        jobs.job_defer(task_name="tests.noop_email", kwargs={"deferred_by": "defer_then_fail"})
        raise ValueError("the follow-up must vanish with this transaction")


@jobs.task(queue="maintenance", name="tests.summarise")
def summarise(clients: int = 3) -> dict[str, object]:
    """Returns what it did, as the product's tasks do (the console shows it)."""
    return {"clients_scored": clients, "levels": {"green": clients}}


@jobs.task(queue="maintenance", name="tests.kwargs_seen", pass_context=True)
def kwargs_seen(context: JobContext, **kwargs: object) -> dict[str, list[str]]:
    """The arguments the task is given, and those of the job its context holds."""
    return {"kwargs": sorted(kwargs), "context": sorted(context.job.task_kwargs)}
