"""procrastinate, wired to the queue layer.

procrastinate's Django integration builds its ``App`` itself; ``on_app_ready`` (named
by PROCRASTINATE_ON_APP_READY) is its hook, and upgrades that app in place:

* ``manage.py procrastinate worker`` runs the project's own worker loop
  (``kgc/queue/``) through the app's public ``run_worker_async``, with the same pause,
  rate limits, fault tolerance and leader election as ``manage.py runworkers``;
* synchronous defers always go through Django's connection of the calling thread
  (``KgcJobManager``), so a job deferred by a task commits with the task's transaction.

procrastinate keeps what it is good at: declaring tasks, the jobs table and its
triggers, deferring, and the admin models.
"""

from __future__ import annotations

from typing import Any

from procrastinate import App, exceptions, manager
from procrastinate import jobs as jobs_module
from procrastinate.contrib.django import django_connector, utils
from procrastinate.contrib.django import settings as procrastinate_settings
from procrastinate.contrib.django.db_cleanup import DjangoApp
from procrastinate.psycopg_connector import PsycopgConnector

from kgc.queues import QUEUES


class KgcJobManager(manager.JobManager):
    def __init__(self, connector: Any, django_connector: django_connector.DjangoConnector) -> None:
        super().__init__(connector)
        self.django_connector = django_connector

    def batch_defer_jobs(self, jobs: list[jobs_module.Job], connection: Any | None = None) -> list[jobs_module.Job]:
        """Synchronous defers always go through Django's connection of the calling thread.

        ``manage.py procrastinate worker`` swaps a pool in as the app's connector; without
        this, a job deferred by a task (a fan-out, the email of a new notification) would
        commit on its own, before the task's transaction, and its worker could look for
        rows not yet there.
        """
        if connection is not None:
            return super().batch_defer_jobs(jobs, connection=connection)
        try:
            results = self.django_connector.execute_query_all(**self._defer_jobs_query_kwargs(jobs=jobs))
        except exceptions.UniqueViolation as exc:
            self._raise_already_enqueued(exc=exc, queueing_lock=exc.queueing_lock)
        return [
            job.evolve(id=results[index]["id"], status=jobs_module.Status.TODO.value) for index, job in enumerate(jobs)
        ]


class KgcDjangoConnector(django_connector.DjangoConnector):
    def get_worker_connector(self) -> PsycopgConnector:
        # Used by ``manage.py procrastinate`` for its own statements (the worker loop has
        # its own connections): a small pool is plenty.
        return PsycopgConnector(
            kwargs=utils.connector_params(procrastinate_settings.settings.DATABASE_ALIAS), min_size=1, max_size=2
        )


class KgcApp(DjangoApp):
    async def run_worker_async(self, **kwargs: Any) -> None:
        """``procrastinate worker``: the project's worker loop on the given queues (default: all).

        ``-c N`` sets each named queue's concurrency; without it, each queue has its own
        (kgc/queues.py, KGC_CONCURRENCY). ``--one-shot`` stops once the queues are empty,
        ``--shutdown-graceful-timeout`` is the shutdown timeout and ``-n`` names the worker.
        The other options of procrastinate's own worker do not apply: this loop always
        listens (and polls every KGC_POLL_INTERVAL) and keeps finished jobs for retention.
        """
        from kgc.queue.config import queue_concurrency, worker_config
        from kgc.queue.process import worker_serve

        self.perform_import_paths()  # task modules named by settings (KGC_EXTRA_TASK_MODULES)
        names = list(kwargs.get("queues") or QUEUES)
        overrides = {name: kwargs["concurrency"] for name in names} if kwargs.get("concurrency") else None
        config = worker_config(
            queues=queue_concurrency(names, overrides),
            shutdown_timeout=kwargs.get("shutdown_graceful_timeout"),
            one_shot=kwargs.get("wait") is False,
            name=kwargs.get("name") or "worker",
        )
        code = await worker_serve(self, config, handle_signals=kwargs.get("install_signal_handlers", True))
        if code:
            raise SystemExit(code)


def on_app_ready(app: App) -> None:
    """Hook named by PROCRASTINATE_ON_APP_READY: upgrade procrastinate's app in place."""
    app.__class__ = KgcApp
    app.connector = KgcDjangoConnector(alias=app.connector.alias)  # type: ignore[attr-defined]
    app.job_manager = KgcJobManager(connector=app.connector, django_connector=app.connector)
