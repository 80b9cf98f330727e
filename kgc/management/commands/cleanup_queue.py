"""Delete a queue's old finished jobs (the seed's ``cleanupQueue``)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from kgc.commands import ProjectCommand, age
from kgc.queue import jobs
from kgc.queues import UnknownQueue, queue_get


class Command(ProjectCommand):
    help = (
        "Delete a queue's completed and failed jobs older than the given ages (7d, 12h, 30m...), "
        "with their events and failure records. An age left out keeps those jobs; with neither, "
        "the queue's retention from kgc/queues.py applies."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="queue name")
        parser.add_argument("--completed-age", type=age, help="delete completed/cancelled jobs finished before this")
        parser.add_argument("--failed-age", type=age, help="delete failed jobs that failed before this")
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")

    def handle(self, *args: Any, **options: Any) -> None:
        completed_age, failed_age = options["completed_age"], options["failed_age"]
        try:
            queue = queue_get(options["name"])
            if completed_age is None and failed_age is None:
                completed_age, failed_age = queue.retention.completed, queue.retention.failed
            result = jobs.cleanup_queue(
                queue.name, completed_age=completed_age, failed_age=failed_age, now=timezone.now()
            )
        except (UnknownQueue, jobs.JobError) as exc:
            raise CommandError(str(exc), returncode=2) from None
        if options["json"]:
            self.stdout.write(json.dumps({"queue": queue.name, "deleted": vars(result)}))
        else:
            self.stdout.write(f"{queue.name}: deleted {result.completed} completed and {result.failed} failed jobs")
