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


def text_storable(text: str) -> str:
    """Text PostgreSQL can store: no NUL character, and no lone surrogate (UTF-8 cannot hold one)."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return text_storable(value)
    if isinstance(value, dict):
        return {text_storable(key) if isinstance(key, str) else key: _storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(item) for item in value]
    return value


def result_json(value: Any) -> str:
    """The value as JSON text jsonb accepts: as it is when JSON can say it and it is short, else
    a shortened text. Never fails: a value JSON cannot say (NaN, a set, circular) is kept as its repr."""
    try:
        text = json.dumps(_storable(value), default=str, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        text = json.dumps(text_storable(repr(value)), ensure_ascii=False)
    if len(text) > RESULT_MAX_CHARS:
        text = json.dumps(text_storable(text[:RESULT_MAX_CHARS]) + "…", ensure_ascii=False)
    return text
