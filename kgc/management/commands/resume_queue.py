"""Resume a paused queue: workers start its jobs again at once."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from kgc.commands import ProjectCommand
from kgc.queue import jobs
from kgc.queues import UnknownQueue


class Command(ProjectCommand):
    help = "Resume a paused queue: workers start its jobs again at once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="queue name")
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            changed = jobs.resume_queue(options["name"])
        except UnknownQueue as exc:
            raise CommandError(str(exc), returncode=2) from None
        if options["json"]:
            self.stdout.write(json.dumps({"queue": options["name"], "paused": False, "changed": changed}))
        else:
            self.stdout.write(f"{options['name']}: {'resumed' if changed else 'was not paused'}")
