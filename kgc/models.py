"""The ``kgc`` app's models, which Django looks for here: the queue layer's (kgc/queue/models.py)."""

from kgc.queue.models import (
    JobCountDelta,
    JobFailure,
    JobOutcomeCount,
    JobResult,
    Leadership,
    QueuePause,
    RateLimitSlot,
    SchedulerTick,
    WorkerProcess,
)

__all__ = [
    "JobCountDelta",
    "JobFailure",
    "JobOutcomeCount",
    "JobResult",
    "Leadership",
    "QueuePause",
    "RateLimitSlot",
    "SchedulerTick",
    "WorkerProcess",
]
