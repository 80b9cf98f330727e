"""The same readiness checks as ``/readyz``, from the command line (a container's health check, a script)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandParser

from kgc.commands import ProjectCommand
from kgc.console.views import readiness_checks


class Command(ProjectCommand):
    help = (
        "Check that the database answers, migrations are applied, every product queue has a live worker, "
        "the scheduler runs and no worker duty keeps failing. Exit code 1 when not ready."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")

    def handle(self, *args: Any, **options: Any) -> None:
        checks = readiness_checks()
        ready = all(verdict == "ok" for verdict in checks.values())
        if options["json"]:
            self.stdout.write(json.dumps({"status": "ok" if ready else "unavailable", "checks": checks}))
        else:
            width = max(map(len, checks))
            for name, verdict in checks.items():
                self.stdout.write(f"{name:<{width}}  {verdict}")
        if not ready:
            raise SystemExit(1)
