"""Run the workers of every queue (or some), with the scheduler, in one process.

The seed's ``worker.ts``. Each queue gets its own procrastinate worker with the
concurrency from ``kgc/queues.py``; the first one also runs the periodic scheduler
and the queue maintenance (crash recovery, counters). SIGTERM or SIGINT stops
fetching, lets running jobs finish (``--shutdown-timeout``), and exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import autoreload
from procrastinate.contrib.django import app

from kgc.queues import QUEUES, UnknownQueue, queue_get
from kgc.worker import KgcWorker, worker_connector

logger = logging.getLogger("kgc.jobs")


class Command(BaseCommand):
    help = "Run the job workers: every queue with its concurrency, plus the scheduler."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queues", default=",".join(QUEUES), help=f"comma-separated queue names (default: all: {','.join(QUEUES)})"
        )
        parser.add_argument("--reload", action="store_true", help="restart when code changes (development)")
        parser.add_argument(
            "--shutdown-timeout",
            type=float,
            default=None,
            help=f"seconds running jobs get to finish on shutdown (default {settings.KGC_SHUTDOWN_TIMEOUT})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            names = [queue_get(name.strip()).name for name in options["queues"].split(",") if name.strip()]
        except UnknownQueue as exc:
            raise CommandError(str(exc), returncode=2) from None
        if not names:
            raise CommandError("--queues names no queue", returncode=2)
        timeout = options["shutdown_timeout"] or float(settings.KGC_SHUTDOWN_TIMEOUT)
        if options["reload"]:
            autoreload.run_with_reloader(run_workers, names, timeout)
        else:
            run_workers(names, timeout)


def run_workers(names: list[str], shutdown_timeout: float) -> None:
    asyncio.run(_run(names, shutdown_timeout))


async def _run(names: list[str], shutdown_timeout: float) -> None:
    queues = [QUEUES[name] for name in names]
    connector = worker_connector(concurrency=sum(q.concurrency for q in queues), workers=len(queues))
    app.perform_import_paths()  # task modules named by settings (KGC_EXTRA_TASK_MODULES)
    with app.replace_connector(connector):
        async with app.open_async():
            workers = [
                KgcWorker(
                    app=app,  # procrastinate's app, upgraded by kgc.worker.on_app_ready
                    queues=[queue.name],
                    name=queue.name,
                    concurrency=queue.concurrency,
                    lead=index == 0,
                    exit_on_abandon=False,
                    install_signal_handlers=False,
                    shutdown_graceful_timeout=shutdown_timeout,
                    **_defaults(),
                )
                for index, queue in enumerate(queues)
            ]
            if threading.current_thread() is threading.main_thread():
                # Under --reload the workers run in a thread of Django's reloader, which
                # handles the signals itself.
                loop = asyncio.get_running_loop()
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(signum, _stop_all, workers, signum)
            logger.info(
                "workers started",
                extra={"event": "workers_started", "queues": ",".join(names), "pid": os.getpid()},
            )
            await asyncio.gather(*(worker.run() for worker in workers))
            logger.info("workers stopped", extra={"event": "workers_stopped", "pid": os.getpid()})
            if any(worker.abandoned_job_ids for worker in workers):
                # Jobs put back at the timeout may still be running in their threads: exit
                # now, before asyncio's teardown would cancel them (and report them
                # aborted) and wait for the threads.
                logging.shutdown()
                os._exit(0)


def _defaults() -> dict[str, Any]:
    """The app's worker defaults (its middleware) minus what each worker sets itself."""
    own = {"queues", "name", "concurrency", "install_signal_handlers", "shutdown_graceful_timeout"}
    return {key: value for key, value in app.worker_defaults.items() if key not in own}


def _stop_all(workers: list[KgcWorker], signum: int) -> None:
    logger.info(
        "stopping: no new jobs; running jobs get their shutdown timeout to finish",
        extra={"event": "workers_stopping", "signal": signal.Signals(signum).name},
    )
    for worker in workers:
        worker.stop()
