"""Which failures are retried, and when.

Transient errors (a dropped connection, a timeout, an SMTP 4xx, a deadlock) are
retried with exponential backoff and jitter, up to the queue's attempts. Permanent
ones (bad payload, unknown tenant, validation error, a value the database refuses)
would fail the same way again, so they fail at once with their reason.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import DataError
from procrastinate import jobs, retry

from kgc.queues import Retry


class PermanentJobError(Exception):
    """Raise from a task to fail the job at once, without retry."""


PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    PermanentJobError,
    ValueError,  # includes the services' own errors (UnknownTenant, ...), which subclass it
    TypeError,  # a payload that does not fit the task's signature
    LookupError,
    ValidationError,
    ObjectDoesNotExist,
    # A value too long for its column, out of range, or not valid for its type: the same
    # data fails the same way on every attempt.
    DataError,
)


def is_permanent(exception: BaseException) -> bool:
    return isinstance(exception, PERMANENT_ERRORS)


def backoff_seconds(policy: Retry, attempts_before: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with "equal jitter": between half and all of base × 2^n, capped."""
    ceiling = min(policy.backoff_max.total_seconds(), policy.backoff_base.total_seconds() * 2**attempts_before)
    return ceiling * (0.5 + (rng or random).random() / 2)  # noqa: S311 - jitter, not security


class QueueRetryStrategy(retry.BaseRetryStrategy):
    def __init__(self, policy: Retry) -> None:
        self.policy = policy

    def will_retry(self, exception: BaseException, job: jobs.Job) -> bool:
        # job.attempts counts the earlier runs; this run is attempt job.attempts + 1.
        return not is_permanent(exception) and job.attempts + 1 < self.policy.max_attempts

    def get_retry_decision(self, *, exception: BaseException, job: jobs.Job) -> retry.RetryDecision | None:
        if not self.will_retry(exception, job):
            return None
        delay = timedelta(seconds=backoff_seconds(self.policy, job.attempts))
        return retry.RetryDecision(retry_at=datetime.now(tz=UTC) + delay)
