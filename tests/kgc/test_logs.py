"""Structured logs: one JSON line per job start, success, retry and failure (LOG_FORMAT=json)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import manage, subprocess_env
from tests.kgc.console.conftest import defer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FIELDS = {"queue", "task", "job_id", "tenant_id", "attempt"}


def _job_lines(output: str) -> list[dict]:
    lines = []
    for line in output.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if str(record.get("event", "")).startswith("job_"):
                lines.append(record)
    return lines


def test_a_worker_logs_each_job_start_and_end_as_json():
    ok = defer("maintenance", task="tests.noop_maintenance", tenant_id=5)
    broken = defer("maintenance", task="tests.fail_permanently", reason="no tax id")
    flaky = defer("maintenance", task="tests.fail_transiently")
    result = manage(
        "procrastinate",
        "worker",
        "--queues=maintenance",
        "--one-shot",
        env=subprocess_env(KGC_EXTRA_TASK_MODULES="tests.kgc.sample_tasks", LOG_FORMAT="json"),
        timeout=60,
    )
    records = _job_lines(result.stdout + result.stderr)
    events = {(record["job_id"], record["event"]) for record in records}
    assert {(ok, "job_started"), (ok, "job_succeeded"), (broken, "job_failed"), (flaky, "job_retry")} <= events
    assert all(set(record) >= FIELDS for record in records)
    succeeded = next(r for r in records if r["job_id"] == ok and r["event"] == "job_succeeded")
    assert (succeeded["tenant_id"], succeeded["attempt"], succeeded["queue"]) == (5, 1, "maintenance")
    assert succeeded["duration_ms"] >= 0
    failed = next(r for r in records if r["job_id"] == broken and r["event"] == "job_failed")
    assert (failed["level"], failed["error"]) == ("ERROR", "ValueError")


def _json_line(message: str = "hello") -> dict:
    import logging

    from kgc.logs import JsonFormatter

    record = logging.LogRecord("kgc.jobs", logging.INFO, __file__, 1, message, None, None)
    return json.loads(JsonFormatter().format(record))


def test_a_json_line_inside_a_span_names_its_trace(spans):
    from kgc.queue import tracing

    with tracing.tracer("tests").start_as_current_span("run") as span:
        line = _json_line()
    context = span.get_span_context()
    assert (line["trace_id"], line["span_id"]) == (f"{context.trace_id:032x}", f"{context.span_id:016x}")


def test_without_tracing_a_json_line_has_no_trace_ids():
    assert "trace_id" not in _json_line()
