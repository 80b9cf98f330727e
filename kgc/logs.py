"""Log formatters: readable text by default, one JSON object per line with LOG_FORMAT=json.

Fields passed in ``extra`` (queue, task, job_id, tenant_id, attempt, duration_ms...)
appear as ``key=value`` pairs in text and as keys in JSON, so the same call serves
a developer's console and a log aggregator. With tracing on, a JSON line written inside a
span also carries its ``trace_id`` and ``span_id``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from kgc.queue import tracing

# Attributes every LogRecord has; anything else was passed in ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def record_extras(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in vars(record).items() if key not in _STANDARD and not key.startswith("_")}


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = record_extras(record)
        pairs = " ".join(f"{key}={value}" for key, value in extras.items() if _is_scalar(value))
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if pairs:
            line = f"{line} [{pairs}]"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **record_extras(record),
            **_trace_ids(),
        }
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def _trace_ids() -> dict[str, str]:
    """With tracing on, the current span's trace and span ids, so that a log line leads to its trace."""
    if not tracing.enabled():
        return {}
    context = trace.get_current_span().get_span_context()
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"} if context.is_valid else {}


def _is_scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool) or value is None
