"""Each succeeded job's return value, kept for the console's job page.

procrastinate does not store what a task returns. The worker writes it to
``kgc_jobresult`` with the job's outcome, in the same statement (``kgc.queue.sql.FINISH``),
as JSON (``result_json``); a job that runs again (a retry, a rescue) replaces its earlier
value, and a task that returns ``None`` stores nothing.
"""

from __future__ import annotations

import json
from typing import Any

# A return value longer than this (as JSON) is kept as its first characters, as text.
RESULT_MAX_CHARS = 10_000


def result_json(value: Any) -> str:
    """The value as JSON text: as it is when JSON can say it and it is short, else a shortened text."""
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):  # circular, or keys JSON cannot have
        text = json.dumps(repr(value))
    if len(text) > RESULT_MAX_CHARS:
        text = json.dumps(text[:RESULT_MAX_CHARS] + "…")
    return text.replace("\\u0000", "")  # PostgreSQL's jsonb holds no NUL character
