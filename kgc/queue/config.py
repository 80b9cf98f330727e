"""A worker process's settings, read once from Django's settings (see the README's tables)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kgc.queues import QUEUES, queue_get

# How often the scheduler checks its schedules at the latest, even when no tick is due:
# each check is recorded, and /readyz reports a scheduler silent for much longer.
SCHEDULER_PERIOD = 10.0
# How often the leader rescues dead workers' jobs and folds the job counters.
MAINTENANCE_PERIOD = 5.0
# How often a worker looks for abort requests of its running jobs (also woken by notifications).
ABORT_POLL_PERIOD = 5.0
# How long a claim, a batch of outcomes or a scheduler tick may go unanswered before its
# connection is dropped and the duty restarted (they take milliseconds when all is well).
STATEMENT_TIMEOUT = 15.0
# The same for the leader's rescue and counter compaction, which may touch many rows.
LONG_QUERY_TIMEOUT = 60.0


class ConcurrencyError(ValueError):
    """A KGC_CONCURRENCY entry that cannot work."""


def concurrency_parse(raw: str) -> dict[str, int]:
    """``"email=40,compliance=2"`` → per-queue concurrency overrides."""
    overrides: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, _, value = item.partition("=")
        queue = queue_get(name.strip())
        try:
            overrides[queue.name] = int(value)
        except ValueError:
            raise ConcurrencyError(f"concurrency for {name.strip()!r} must be a whole number, got {value!r}") from None
        if not 1 <= overrides[queue.name] <= 1000:
            raise ConcurrencyError(f"concurrency for {queue.name!r} must be from 1 to 1000, got {value}")
    return overrides


@dataclass(frozen=True)
class WorkerConfig:
    queues: Mapping[str, int]  # queue name → jobs run at once in this process
    heartbeat_interval: float = 5.0
    dead_after: float = 20.0
    leader_ttl: float = 10.0
    recovery_timeout: float = 300.0
    poll_interval: float = 1.0
    shutdown_timeout: float = 30.0
    scheduler_catch_up: float = 20 * 3600.0
    unknown_task_grace: float = 600.0
    one_shot: bool = False  # stop once the queues are empty (``procrastinate worker --one-shot``)
    name: str = "worker"

    @property
    def query_timeout(self) -> float:
        """The heartbeat's and the election's statements: a quarter of the dead cutoff, so a
        stuck one fails (and the worker stops claiming) long before others declare it dead."""
        return max(0.5, min(10.0, self.dead_after / 4))

    @property
    def unknown_task_delay(self) -> float:
        """How long a job whose task this worker does not know waits before it is claimed again:
        a few tries within the grace, at most every 30 s."""
        return min(30.0, max(self.unknown_task_grace / 4, 0.5))

    @property
    def fence_after(self) -> float:
        """No successful heartbeat for this long: stop claiming (the cluster may soon declare us dead)."""
        return min(2 * self.heartbeat_interval, self.dead_after / 2)


def queue_concurrency(names: Iterable[str], overrides: Mapping[str, int] | None = None) -> dict[str, int]:
    """Each named queue's concurrency: declared in kgc/queues.py, overridden by KGC_CONCURRENCY."""
    from django.conf import settings

    effective = {**concurrency_parse(settings.KGC_CONCURRENCY), **(overrides or {})}
    return {queue_get(name).name: effective.get(name, QUEUES[queue_get(name).name].concurrency) for name in names}


def worker_config(*, queues: Mapping[str, int], **overrides: object) -> WorkerConfig:
    from django.conf import settings

    options: dict[str, object] = {
        "heartbeat_interval": settings.KGC_HEARTBEAT_INTERVAL,
        "dead_after": settings.KGC_WORKER_DEAD_AFTER,
        "leader_ttl": settings.KGC_LEADER_TTL,
        "recovery_timeout": settings.KGC_RECOVERY_TIMEOUT,
        "poll_interval": settings.KGC_POLL_INTERVAL,
        "shutdown_timeout": float(settings.KGC_SHUTDOWN_TIMEOUT),
        "scheduler_catch_up": settings.KGC_SCHEDULER_CATCH_UP_HOURS * 3600.0,
        "unknown_task_grace": settings.KGC_UNKNOWN_TASK_GRACE,
    }
    options.update({key: value for key, value in overrides.items() if value is not None})
    return WorkerConfig(queues=dict(queues), **options)  # type: ignore[arg-type]


def timing_problems(*, heartbeat_interval: float, dead_after: float, leader_ttl: float) -> list[str]:
    """Combinations of the fault-tolerance settings that cannot work (the system check kgc.E002)."""
    problems = []
    if dead_after < 3 * heartbeat_interval:
        problems.append(
            f"KGC_WORKER_DEAD_AFTER ({dead_after:g} s) must be at least 3 × KGC_HEARTBEAT_INTERVAL "
            f"({heartbeat_interval:g} s): a live worker would be declared dead between two heartbeats"
        )
    if leader_ttl > dead_after:
        problems.append(
            f"KGC_LEADER_TTL ({leader_ttl:g} s) must be at most KGC_WORKER_DEAD_AFTER ({dead_after:g} s): the "
            "scheduler and the rescue would wait for a dead leader longer than its jobs wait for rescue"
        )
    return problems
