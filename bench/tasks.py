"""The benchmark's no-op task, on the email queue (loaded by workers via KGC_EXTRA_TASK_MODULES)."""

from kgc.queue import jobs


@jobs.task(queue="email", name="bench.noop")
def noop() -> None:
    return None
