"""Pause a queue: no worker starts its jobs until it is resumed; running jobs finish."""

from __future__ import annotations

import getpass
import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from kgc.commands import ProjectCommand
from kgc.queue import jobs
from kgc.queues import UnknownQueue


class Command(ProjectCommand):
    help = "Pause a queue: workers start none of its jobs until resume_queue; running jobs finish."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="queue name")
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            changed = jobs.pause_queue(options["name"], by=f"{getpass.getuser()} (manage.py)")
        except UnknownQueue as exc:
            raise CommandError(str(exc), returncode=2) from None
        if options["json"]:
            self.stdout.write(json.dumps({"queue": options["name"], "paused": True, "changed": changed}))
        else:
            self.stdout.write(f"{options['name']}: {'paused' if changed else 'was already paused'}")
