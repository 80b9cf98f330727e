"""Put failed jobs back in their queue, each with a fresh set of attempts."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from kgc import jobs
from kgc.queues import UnknownQueue


class Command(BaseCommand):
    help = "Retry every failed job of a queue (or of all queues): each goes back to waiting with fresh attempts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--queue", help="only this queue (default: all)")
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            count = jobs.retry_failed(options["queue"])
        except UnknownQueue as exc:
            raise CommandError(str(exc), returncode=2) from None
        if options["json"]:
            self.stdout.write(json.dumps({"queue": options["queue"], "retried": count}))
        else:
            self.stdout.write(f"{options['queue'] or 'all queues'}: {count} failed job(s) put back in the queue")
