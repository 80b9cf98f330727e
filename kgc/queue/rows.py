"""Queues whose work items are an app's own rows (an outbox), not procrastinate jobs.

An app registers such a queue from its ``AppConfig.ready()`` with ``row_queue_register``:

* a **consumer**, which a worker process serving the queue runs beside its job loop: its
  duties go under the worker's supervisor (restarted with backoff, counted in health),
  it is woken by the notifications on its channels, and it is given the shutdown timeout
  to finish what it holds;
* a **reader**, which answers for the queue wherever the queue layer reports on queues
  (the counts in BullMQ's shape, the oldest waiting item, what finished lately, totals
  that only grow, bulk retries of failed items), so that the dashboard, the API,
  ``queue_stats`` and ``/metrics`` speak of the queue's real work.

The queue keeps its declaration in ``kgc/queues.py`` (concurrency, rate limit, retry
policy, retention): the consumer applies them to its rows. The queue layer imports no
app: apps import this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from kgc.queue.supervisor import Duty


@dataclass(frozen=True)
class ConsumerContext:
    """What a worker process gives the consumer of one of its queues."""

    queue: str
    concurrency: int  # items in hand at once in this process
    connection_params: Mapping[str, Any]  # for the consumer's own connections (kgc.queue.db.Link)
    worker_id: Callable[[], int | None]  # this process's registration (the fencing token); None while unregistered
    fenced: Callable[[], bool]  # True while the process must not claim (its heartbeat is failing or late)
    is_leader: Callable[[], bool]
    poll_interval: float
    dead_after: float  # silence after which a worker is declared dead


class QueueConsumer(Protocol):
    channels: tuple[str, ...]  # LISTEN channels whose notifications wake it

    def duties(self) -> list[Duty]: ...

    def wake(self) -> None: ...

    def in_hand(self) -> int: ...

    async def shutdown(self, *, timeout: float) -> None:
        """Stop claiming; give what is in hand ``timeout`` seconds to finish; settle the rest."""
        ...


@dataclass(frozen=True)
class RowCounts:
    """A row queue's items in BullMQ's states (``ready``: due now, waiting or paused)."""

    ready: int = 0
    active: int = 0
    delayed: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0


@dataclass(frozen=True)
class RowActivity:
    """What ended in a window: items completed, failed for good, and failed attempts that will be retried."""

    completed: int = 0
    failed: int = 0
    retried: int = 0


@dataclass(frozen=True)
class RowTotals:
    """What ended since the queue began, in counts that only grow (the ``*_total`` series of
    ``/metrics``): items completed, failed for good, and failed attempts that will be retried;
    and how many items entered each of the app's own states (the outbox's ``sent``...)."""

    completed: int = 0
    failed: int = 0
    retried: int = 0
    entered: Mapping[str, int] = field(default_factory=dict)


class RowQueueReader(Protocol):
    def counts(self, *, now: datetime) -> RowCounts: ...

    def totals(self) -> RowTotals:
        """Monotonic counts: retention, cleanup and the folding of old counts never lower them."""
        ...

    def states(self) -> dict[str, int]:
        """How many items are in each of the app's own states now (all of them, whatever their age)."""
        ...

    def oldest_waiting_seconds(self, *, now: datetime) -> float | None: ...

    def activity(self, *, since: datetime, now: datetime) -> RowActivity: ...

    def finished_series(self, *, origin: datetime, now: datetime, bucket: timedelta) -> dict[datetime, RowActivity]:
        """Items completed and failed per ``bucket`` from ``origin`` to ``now``, keyed by bucket start."""
        ...

    def failed_retry(self) -> int:
        """Put failed items back, less those its holds keep out; return how many went back."""
        ...

    def failed_held(self) -> dict[str, int]:
        """How many failed items each of its holds keeps out of a bulk retry, by hold name."""
        ...


@dataclass(frozen=True)
class RowQueue:
    name: str
    consumer: Callable[[ConsumerContext], QueueConsumer]
    reader: RowQueueReader


_row_queues: dict[str, RowQueue] = {}


def row_queue_register(queue: RowQueue) -> None:
    """Make ``queue.name`` a row queue (from an app's ``ready()``)."""
    _row_queues[queue.name] = queue


def row_queue_get(name: str) -> RowQueue | None:
    return _row_queues.get(name)


def row_queues() -> dict[str, RowQueue]:
    return dict(_row_queues)
