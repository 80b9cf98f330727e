"""Failed jobs, newest first, with why each attempt failed."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from kgc.commands import ProjectCommand, positive_int
from kgc.console import metrics
from kgc.queue import jobs
from kgc.queues import UnknownQueue

MESSAGE_WIDTH = 60


class Command(ProjectCommand):
    help = "List failed jobs, newest first: queue, task, tenant, attempts and the last error."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--queue", help="only this queue (default: all)")
        parser.add_argument("--limit", type=positive_int, default=50, help="at most this many jobs (default 50)")
        parser.add_argument("--json", action="store_true", help="print JSON (every attempt, with tracebacks)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            failed = jobs.get_failed(options["queue"], limit=options["limit"])
        except UnknownQueue as exc:
            raise CommandError(str(exc), returncode=2) from None
        if options["json"]:
            self.stdout.write(json.dumps({"jobs": [_as_dict(job) for job in failed]}, indent=2))
            return
        if not failed:
            self.stdout.write("no failed jobs")
            return
        self.stdout.write(
            metrics.text_table(
                ["id", "queue", "task", "tenant", "attempts", "failed at", "error"], [_row(j) for j in failed]
            )
        )


def _args(job: jobs.FailedJob) -> dict[str, Any]:
    # jobs.get_failed reads ``args`` through a raw cursor, where Django leaves jsonb as text.
    return json.loads(job.args) if isinstance(job.args, str) else job.args


def _row(job: jobs.FailedJob) -> list[object]:
    last = job.last_failure
    error = f"{last.exception_type}: {last.message}" if last else "(no failure record)"
    error = error.replace("\n", " ")
    return [
        job.id,
        job.queue,
        job.task,
        _args(job).get("tenant_id", "-"),
        job.attempts,
        f"{last.failed_at:%Y-%m-%d %H:%M:%S}" if last else "-",
        error if len(error) <= MESSAGE_WIDTH else error[: MESSAGE_WIDTH - 1] + "…",
    ]


def _as_dict(job: jobs.FailedJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "queue": job.queue,
        "task": job.task,
        "args": _args(job),
        "attempts": job.attempts,
        "failures": [
            {
                "attempt": failure.attempt,
                "exception_type": failure.exception_type,
                "message": failure.message,
                "traceback": failure.traceback,
                "will_retry": failure.will_retry,
                "failed_at": failure.failed_at.isoformat(),
            }
            for failure in job.failures
        ],
    }
