"""The queues, declared once. Everything else (workers, limits, retries, retention,
the scheduler, the admin) reads them from here.

The four product queues are the seed's; ``maintenance`` carries the scheduler's
ticks and the retention task so that they never count against a product queue's
rate limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta


class UnknownQueue(LookupError, ValueError):
    """A queue name that ``kgc/queues.py`` does not declare."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown queue {name!r}; known queues: {', '.join(QUEUES)}")


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` job starts in any window of ``per`` (all workers together)."""

    limit: int
    per: timedelta = timedelta(minutes=1)


@dataclass(frozen=True)
class Retry:
    """Attempts in all (the first run included) and exponential backoff with jitter."""

    max_attempts: int = 5
    backoff_base: timedelta = timedelta(seconds=10)
    backoff_max: timedelta = timedelta(hours=1)


@dataclass(frozen=True)
class Retention:
    completed: timedelta = timedelta(days=7)
    failed: timedelta = timedelta(days=30)


@dataclass(frozen=True)
class Queue:
    name: str
    concurrency: int
    rate_limit: RateLimit | None = None
    retry: Retry = field(default_factory=Retry)
    retention: Retention = field(default_factory=Retention)
    internal: bool = False


COMPLIANCE = "compliance"
EXPIRY_NOTIFICATION = "expiry-notification"
FILING_REMINDER = "filing-reminder"
EMAIL = "email"
MAINTENANCE = "maintenance"

QUEUES: dict[str, Queue] = {
    queue.name: queue
    for queue in (
        Queue(COMPLIANCE, concurrency=1, rate_limit=RateLimit(5), retry=Retry(max_attempts=3)),
        Queue(EXPIRY_NOTIFICATION, concurrency=2, retry=Retry(max_attempts=5)),
        Queue(FILING_REMINDER, concurrency=2, retry=Retry(max_attempts=5)),
        # Its concurrency is sends in flight per worker process, on the event loop: each waits on
        # the network, not on a thread or a database connection (notifications/dispatcher.py).
        Queue(
            EMAIL,
            concurrency=20,
            rate_limit=RateLimit(100),
            retry=Retry(max_attempts=6, backoff_base=timedelta(seconds=30)),
        ),
        Queue(MAINTENANCE, concurrency=1, retry=Retry(max_attempts=3), internal=True),
    )
}

# The cron schedules, in UTC.
# Each names the fan-out task that the tick runs (on the maintenance queue); the
# fan-out defers one job per active tenant on the product queue.
SCHEDULES: dict[str, str] = {
    "compliance.refresh_all": "0 2 * * *",
    # Hourly: each tenant's morning checks (the seed's 0 8 * * * check_expiry_all and
    # send_filing_reminders_all, plus overdue escalations) in the first tick at or after its
    # reminder hour (KGC_REMINDER_HOUR) in its own time zone, at most once per local day.
    "notifications.morning_checks_all": "0 * * * *",
    # Hourly: each tenant's digests go out in the first tick at or after its digest hour
    # (KGC_DIGEST_HOUR) in its own time zone, at most once per local day.
    "notifications.send_digests_all": "0 * * * *",
    "kgc.retention": "17 * * * *",
}
# What each schedule does in each tenant's own time, for the dashboard ({reminder_hour} and
# {digest_hour} are the settings'); how it maps to the seed's crons.
SCHEDULE_NOTES: dict[str, str] = {
    "compliance.refresh_all": "every tenant, for its own local date at the tick",
    "notifications.morning_checks_all": (
        "each tenant at {reminder_hour:02d}:00 its local time (KGC_REMINDER_HOUR): expiry checks, filing "
        "reminders, overdue escalations; the seed's 0 8 * * * (UTC) for a tenant in UTC"
    ),
    "notifications.send_digests_all": "each tenant at {digest_hour:02d}:00 its local time (KGC_DIGEST_HOUR)",
    "kgc.retention": "every queue's finished jobs past its retention",
}


def rate_limits_parse(raw: str) -> dict[str, RateLimit | None]:
    """``"compliance=5/60s,email=off"`` → per-queue overrides (``off`` lifts a limit)."""
    overrides: dict[str, RateLimit | None] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, _, spec = item.partition("=")
        queue = queue_get(name.strip())
        spec = spec.strip().lower()
        if spec == "off":
            overrides[queue.name] = None
            continue
        limit, _, window = spec.partition("/")
        try:
            seconds = float(window.removesuffix("s")) if window else 60.0
            overrides[queue.name] = RateLimit(int(limit), timedelta(seconds=seconds))
        except ValueError:
            raise ValueError(f"rate limit for {name!r} must look like 5/60s or off, got {spec!r}") from None
    return overrides


def rate_limits() -> dict[str, RateLimit]:
    """Every queue's effective rate limit: kgc/queues.py, then the KGC_RATE_LIMITS overrides."""
    from django.conf import settings

    declared = {queue.name: queue.rate_limit for queue in QUEUES.values()}
    effective = {**declared, **rate_limits_parse(settings.KGC_RATE_LIMITS)}
    return {name: limit for name, limit in effective.items() if limit is not None}


def queue_get(name: str) -> Queue:
    try:
        return QUEUES[name]
    except KeyError:
        raise UnknownQueue(name) from None


def product_queues() -> list[Queue]:
    return [queue for queue in QUEUES.values() if not queue.internal]
