"""runworkers refuses what it cannot run, in one line."""

from __future__ import annotations

import pytest

from tests.helpers import manage


@pytest.mark.parametrize(
    ("queues", "message"),
    [("emails", "unknown queue 'emails'"), (",", "--queues names no queue")],
)
def test_bad_queue_names_exit_2_with_one_line(db, queues, message):
    result = manage("runworkers", "--queues", queues)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert message in lines[0]
