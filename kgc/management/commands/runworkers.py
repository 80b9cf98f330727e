"""Run the workers: every queue (or some), with the scheduler, on every core.

The seed's ``worker.ts``. ``--processes N`` (default: one per CPU, or ``KGC_PROCESSES``)
worker processes, each serving the queues with their concurrency from
``kgc/queues.py`` (or ``KGC_CONCURRENCY``); one of them, elected, also runs the
scheduler and the crash rescue. SIGTERM or SIGINT stops claiming, lets running jobs
finish (``--shutdown-timeout``), and exits 0; a worker that cannot recover from a
database fault within ``KGC_RECOVERY_TIMEOUT`` exits 3. See ``kgc/queue/``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser
from django.utils import autoreload
from procrastinate.contrib.django import app

from kgc.commands import ProjectCommand, positive_int
from kgc.queue import process
from kgc.queue.config import ConcurrencyError, queue_concurrency, worker_config
from kgc.queues import QUEUES, UnknownQueue, queue_get

CHILD = "KGC_WORKER_PARENT_PID"  # the parent's pid, in the environment of the processes it starts


class Command(ProjectCommand):
    help = "Run the job workers: every queue with its concurrency, plus the scheduler, in N processes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queues", default=",".join(QUEUES), help=f"comma-separated queue names (default: all: {','.join(QUEUES)})"
        )
        parser.add_argument(
            "--processes",
            type=positive_int,
            default=None,
            help=f"worker processes (default: KGC_PROCESSES, else one per CPU: {os.cpu_count()})",
        )
        parser.add_argument("--reload", action="store_true", help="one process, restarted when code changes")
        parser.add_argument(
            "--shutdown-timeout",
            type=float,
            default=None,
            help=f"seconds running jobs get to finish on shutdown (default {settings.KGC_SHUTDOWN_TIMEOUT})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            names = [queue_get(name.strip()).name for name in options["queues"].split(",") if name.strip()]
            concurrency = queue_concurrency(names)
        except (UnknownQueue, ConcurrencyError) as exc:
            raise CommandError(str(exc), returncode=2) from None
        if not names:
            raise CommandError("--queues names no queue", returncode=2)
        processes = options["processes"] or settings.KGC_PROCESSES or os.cpu_count() or 1
        config = worker_config(queues=concurrency, shutdown_timeout=options["shutdown_timeout"], name="runworkers")
        app.perform_import_paths()  # task modules named by settings (KGC_EXTRA_TASK_MODULES)
        if options["reload"]:
            autoreload.run_with_reloader(process.worker_run, app, config)
            return
        if os.environ.get(CHILD):
            process.parent_death_signal(int(os.environ[CHILD]))
        if processes == 1 or os.environ.get(CHILD):
            sys.exit(process.worker_run(app, config))
        child = [sys.executable, sys.argv[0], "runworkers", "--processes", "1", "--queues", ",".join(names)]
        if options["shutdown_timeout"] is not None:
            child += ["--shutdown-timeout", str(options["shutdown_timeout"])]
        os.environ[CHILD] = str(os.getpid())
        group = process.ProcessGroup(
            child,
            processes=processes,
            recovery_timeout=config.recovery_timeout,
            shutdown_timeout=config.shutdown_timeout,
        )
        sys.exit(group.run())
