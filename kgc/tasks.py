"""The ``kgc`` app's tasks, which procrastinate looks for here: the queue layer's (kgc/queue/tasks.py)."""

from kgc.queue.tasks import retention

__all__ = ["retention"]
