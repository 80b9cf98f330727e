"""Put failed jobs back in their queue, each with a fresh set of attempts."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from kgc.commands import ProjectCommand
from kgc.queue import jobs
from kgc.queues import UnknownQueue
from kgc.texts import counted


class Command(ProjectCommand):
    help = (
        "Retry every failed job of a queue (or of all queues): each goes back to waiting with fresh attempts. "
        "Emails whose delivery is unknown are left out and counted: resend those one at a time "
        "from the outbound email admin."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--queue", help="only this queue (default: all)")
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = jobs.failed_jobs_retry(options["queue"])
        except UnknownQueue as exc:
            raise CommandError(str(exc), returncode=2) from None
        if options["json"]:
            self.stdout.write(
                json.dumps({"queue": options["queue"], "retried": result.retried, "left_out": result.held})
            )
            return
        line = f"{options['queue'] or 'all queues'}: {counted(result.retried, 'failed job')} put back in the queue"
        for hold in jobs.retry_holds():
            if result.held.get(hold.name):
                line += f"; {result.held[hold.name]} left out: {hold.description}"
        self.stdout.write(line)
