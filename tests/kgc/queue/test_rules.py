"""The queue layer's pure rules: priorities, backoff, permanent errors, rate-limit overrides."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError

from compliance.exceptions import UnknownTenant
from kgc.queue.jobs import InvalidPriority, priority_from_stored, priority_to_stored
from kgc.queue.retry import PermanentJobError, backoff_seconds, is_permanent
from kgc.queues import RateLimit, Retry, UnknownQueue, rate_limits_parse


@pytest.mark.parametrize(("priority", "stored"), [(1, -1), (2, -2), (None, -100), (1000, -1000)])
def test_bullmq_priorities_are_stored_so_that_1_runs_first(priority, stored):
    assert priority_to_stored(priority) == stored
    assert priority_from_stored(stored) == (priority or 100)


def test_priority_1_outranks_the_default_in_procrastinate_order():
    assert priority_to_stored(1) > priority_to_stored(None) > priority_to_stored(500)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "1", True, 2_000_000])
def test_bad_priority_is_refused(bad):
    with pytest.raises(InvalidPriority, match="priority must be"):
        priority_to_stored(bad)


@pytest.mark.parametrize(
    ("attempts_before", "low", "high"),
    [(0, 5, 10), (1, 10, 20), (2, 20, 40), (3, 40, 80), (10, 1800, 3600)],
)
def test_backoff_doubles_with_jitter_and_is_capped(attempts_before, low, high):
    policy = Retry(max_attempts=20, backoff_base=timedelta(seconds=10), backoff_max=timedelta(hours=1))
    delays = [backoff_seconds(policy, attempts_before, random.Random(seed)) for seed in range(50)]
    assert all(low <= delay <= high for delay in delays)
    assert len(set(delays)) > 1  # jittered: workers retrying together spread out


@pytest.mark.parametrize(
    ("exception", "permanent"),
    [
        (ValueError("bad payload"), True),
        (TypeError("unexpected keyword argument"), True),
        (UnknownTenant(7), True),
        (ValidationError("invalid"), True),
        (PermanentJobError("550 recipient refused"), True),
        (ConnectionError("reset by peer"), False),
        (TimeoutError(), False),
        (OSError("451 try again later"), False),
        (RuntimeError("deadlock detected"), False),
    ],
)
def test_errors_are_classified_permanent_or_transient(exception, permanent):
    assert is_permanent(exception) is permanent


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", {}),
        ("compliance=5/60s", {"compliance": RateLimit(5, timedelta(seconds=60))}),
        ("email=off", {"email": None}),
        ("compliance=3/4s, email=10", {"compliance": RateLimit(3, timedelta(seconds=4)), "email": RateLimit(10)}),
    ],
)
def test_rate_limit_overrides_are_parsed(raw, expected):
    assert rate_limits_parse(raw) == expected


def test_rate_limit_override_for_an_unknown_queue_is_refused():
    with pytest.raises(UnknownQueue, match="unknown queue 'emails'"):
        rate_limits_parse("emails=5")


def test_malformed_rate_limit_is_refused():
    with pytest.raises(ValueError, match="must look like 5/60s or off"):
        rate_limits_parse("email=fast")


@pytest.mark.parametrize(
    ("attempts_before", "exception", "retried"),
    [
        (0, ConnectionError(), True),
        (1, ConnectionError(), True),
        (2, ConnectionError(), False),  # the third and last attempt of three
        (0, ValueError("unknown tenant"), False),
    ],
)
def test_transient_errors_are_retried_until_the_queue_attempts_run_out(attempts_before, exception, retried):
    from procrastinate.jobs import Job

    from kgc.queue.retry import QueueRetryStrategy

    strategy = QueueRetryStrategy(Retry(max_attempts=3))
    job = Job(id=1, queue="compliance", lock=None, queueing_lock=None, task_name="t", attempts=attempts_before)
    decision = strategy.get_retry_decision(exception=exception, job=job)
    assert (decision is not None) is retried


def test_a_database_data_error_is_permanent():
    # A value too long for its column fails the same way on every retry.
    from django.db import DataError

    assert is_permanent(DataError("value too long for type character varying(300)")) is True
