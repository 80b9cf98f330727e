"""Worker settings that cannot work are refused with a message naming them."""

from __future__ import annotations

import pytest

from kgc.queue.config import ConcurrencyError, concurrency_parse, timing_problems
from kgc.queues import UnknownQueue


def test_concurrency_overrides_are_parsed_per_queue():
    assert concurrency_parse("email=40, compliance=2") == {"email": 40, "compliance": 2}


@pytest.mark.parametrize(
    ("raw", "error", "message"),
    [
        ("emails=4", UnknownQueue, "unknown queue 'emails'"),
        ("email=many", ConcurrencyError, "concurrency for 'email' must be a whole number, got 'many'"),
        ("email=0", ConcurrencyError, "concurrency for 'email' must be from 1 to 1000, got 0"),
    ],
)
def test_bad_concurrency_overrides_name_what_is_wrong(raw, error, message):
    with pytest.raises(error, match=message):
        concurrency_parse(raw)


@pytest.mark.parametrize(
    ("heartbeat", "dead_after", "leader_ttl", "problem"),
    [
        (5, 20, 10, None),
        (5, 10, 10, "KGC_WORKER_DEAD_AFTER (10 s) must be at least 3 × KGC_HEARTBEAT_INTERVAL (5 s)"),
        (5, 20, 30, "KGC_LEADER_TTL (30 s) must be at most KGC_WORKER_DEAD_AFTER (20 s)"),
    ],
)
def test_timings_that_cannot_work_are_named(heartbeat, dead_after, leader_ttl, problem):
    problems = timing_problems(heartbeat_interval=heartbeat, dead_after=dead_after, leader_ttl=leader_ttl)
    assert [p.split(":")[0] for p in problems] == ([problem] if problem else [])
