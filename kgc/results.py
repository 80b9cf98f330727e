"""Each succeeded job's return value, kept for the console's job page.

procrastinate does not store what a task returns. A worker middleware records it in
``kgc_jobresult`` after the task returns, on the worker's own connection: it never
fails the job (a value that cannot be stored is logged and skipped), and a job that runs
again (a retry, a rescue) replaces its earlier value.

It costs a job one short statement, committed without waiting for the disk (a result
lost in a crash is only a blank on a page), and nothing when the task returns ``None``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from procrastinate import job_context, worker

logger = logging.getLogger("kgc.jobs")

# A return value longer than this (as JSON) is kept as its first characters, as text.
RESULT_MAX_CHARS = 10_000

# set_config(..., true) lasts for this statement's own transaction (autocommit); the
# MATERIALIZED CTE makes PostgreSQL evaluate it before the insert.
RESULT_SQL = """
WITH async_commit AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true))
INSERT INTO kgc_jobresult (job_id, value, recorded_at)
SELECT %(job_id)s, %(value)s::jsonb, now() FROM async_commit
    ON CONFLICT (job_id) DO UPDATE SET value = EXCLUDED.value, recorded_at = EXCLUDED.recorded_at
"""


def result_json(value: Any) -> str:
    """The value as JSON text: as it is when JSON can say it and it is short, else a shortened text."""
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):  # circular, or keys JSON cannot have
        text = json.dumps(repr(value))
    if len(text) > RESULT_MAX_CHARS:
        text = json.dumps(text[:RESULT_MAX_CHARS] + "…")
    return text.replace("\\u0000", "")  # PostgreSQL's jsonb holds no NUL character


async def job_result_record(
    call_next: Callable[[], Awaitable[Any]], context: job_context.JobContext, running_worker: worker.Worker
) -> Any:
    """Worker middleware: run the job, then record what it returned (if anything)."""
    result = await call_next()
    if result is None:
        return result
    try:
        await running_worker.app.job_manager.connector.execute_query_async(
            query=RESULT_SQL, job_id=context.job.id, value=result_json(result)
        )
    except Exception:  # the job succeeded; failing to keep its return value must not change that
        logger.warning(
            "could not record the job's return value",
            exc_info=True,
            extra={"event": "job_result_not_recorded", "job_id": context.job.id},
        )
    return result
