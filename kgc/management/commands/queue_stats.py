"""Counts per queue (the seed's ``getAllQueueStats()``), with the oldest waiting job's age."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandParser
from django.utils import timezone

from kgc.commands import ProjectCommand
from kgc.console import metrics

COLUMNS = ("waiting", "active", "delayed", "completed", "failed", "paused", "cancelled")


class Command(ProjectCommand):
    help = "Show each queue's job counts, whether it is paused and how long its oldest waiting job has waited."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")

    def handle(self, *args: Any, **options: Any) -> None:
        overview = metrics.queues_overview(now=timezone.now())
        if options["json"]:
            self.stdout.write(json.dumps({"queues": {q.name: metrics.overview_as_dict(q) for q in overview}}, indent=2))
            return
        rows = [
            [
                queue.name,
                *(queue.stats.as_dict()[column] for column in COLUMNS),
                "yes" if queue.is_paused else "no",
                metrics.age_format(queue.oldest_waiting_seconds),
            ]
            for queue in overview
        ]
        self.stdout.write(metrics.text_table(["queue", *COLUMNS, "is paused", "oldest waiting"], rows))
