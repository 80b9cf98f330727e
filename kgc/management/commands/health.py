"""The same readiness checks as ``/readyz``, from the command line (a container's health check, a script);
or, with ``--worker``, the health of the worker processes of this machine or container alone."""

from __future__ import annotations

import json
import socket
from datetime import timedelta
from typing import Any

import psutil
from django.conf import settings
from django.core.management.base import CommandParser
from django.db import DatabaseError

from kgc.commands import ProjectCommand
from kgc.console.views import readiness_checks
from kgc.queue import health


class Command(ProjectCommand):
    help = (
        "Check that the database answers, migrations are applied, every product queue has a live worker, "
        "the scheduler runs and no worker duty keeps failing. With --worker: that each worker process of this "
        "host (or container) beats and has no duty failing. Exit code 1 when not healthy."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")
        parser.add_argument(
            "--worker",
            action="store_true",
            help="check only the worker processes running here (a worker container's health check)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        checks = worker_checks() if options["worker"] else readiness_checks()
        ready = all(verdict == "ok" for verdict in checks.values())
        if options["json"]:
            self.stdout.write(json.dumps({"status": "ok" if ready else "unavailable", "checks": checks}))
        else:
            width = max(map(len, checks))
            for name, verdict in checks.items():
                self.stdout.write(f"{name:<{width}}  {verdict}")
        if not ready:
            raise SystemExit(1)


def worker_checks() -> dict[str, str]:
    """Each worker process of this host: registered under its host name with a pid running
    here (so a container sees its own), beating, and with no duty failing for too long."""
    try:
        cluster = health.cluster_read()
    except DatabaseError as exc:
        return {"database": f"unreachable: {type(exc).__name__}"}
    return health.worker_verdicts(
        cluster,
        host=socket.gethostname()[:255],  # as the worker registers it
        local_pids=psutil.pids(),
        now=cluster.now,
        dead_after=health.worker_dead_after(),
        duty_failing_after=timedelta(seconds=settings.KGC_DUTY_FAILING_AFTER),
    )
