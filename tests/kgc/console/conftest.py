"""Fixtures for the operator console's tests: users, and jobs in every state.

Jobs are put in their states the way workers put them there (todo → doing → failed or
succeeded, one UPDATE each), so procrastinate's triggers write the same events and the
count triggers the same deltas as in production.
"""

from __future__ import annotations

import json
import os
import traceback
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.utils import timezone
from procrastinate.contrib.django.models import ProcrastinateJob

import tests.kgc.sample_tasks  # noqa: F401  (registers the tests.* tasks in this process)
from kgc.queue import jobs
from kgc.queue.models import JobFailure, Leadership, WorkerProcess
from tests.factories import UserFactory
from tests.helpers import ROOT

# Screenshots of the console, kept as test artifacts (never committed).
SCREENSHOTS = Path(os.environ.get("KGC_SCREENSHOTS", ROOT / "tests" / "artifacts" / "screenshots"))
_screenshots_taken: list[Path] = []


def shot(page: Any, name: str) -> Path:
    """A full-page screenshot of a Playwright page, kept under SCREENSHOTS."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    _screenshots_taken.append(path)
    return path


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _screenshots_taken:
        terminalreporter.write_line(f"{len(_screenshots_taken)} console screenshot(s) at 1280 px in {SCREENSHOTS}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # WhiteNoise warns when STATIC_ROOT has not been collected (a checkout without
    # collectstatic); the admin pages are the first to load the middleware.
    for item in items:
        if "tests/kgc/console/" in str(item.path):
            item.add_marker(pytest.mark.filterwarnings("ignore:No directory at:UserWarning"))


@pytest.fixture
def superuser(db):
    return UserFactory(username="operator", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_client_for(db):
    """``admin_client_for(user)``: a test client logged in as that user."""

    def make(user) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def staff_client(superuser, admin_client_for) -> Client:
    return admin_client_for(superuser)


@pytest.fixture
def staff_without_permissions(db):
    return UserFactory(username="intern", is_staff=True)


@pytest.fixture
def staff_viewer(db):
    """Staff who may look at the dashboard and jobs but not act."""
    user: Any = UserFactory(username="viewer", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_queuepause", "view_procrastinatejob"]))
    return user


def defer(queue: str = "email", *, tenant_id: int | None = None, task: str | None = None, **kwargs: Any) -> int:
    task_name = task or f"tests.noop_{queue.replace('-', '_')}"
    if tenant_id is not None:
        kwargs["tenant_id"] = tenant_id
    job_id, _ = jobs.job_defer(task_name=task_name, kwargs=kwargs)
    return job_id


def _set_status(job_id: int, status: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            """UPDATE procrastinate_jobs SET status = %s::procrastinate_job_status, attempts = attempts + %s
                WHERE id = %s""",
            [status, 1 if status in ("succeeded", "failed") else 0, job_id],
        )


def start(job_id: int) -> None:
    _set_status(job_id, "doing")


def succeed(job_id: int) -> None:
    start(job_id)
    _set_status(job_id, "succeeded")


def retry(job_id: int) -> None:
    """A failed attempt that goes back to the queue: doing, then waiting with the attempt counted."""
    start(job_id)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE procrastinate_jobs SET status = 'todo', attempts = attempts + 1 WHERE id = %s", [job_id])


def _failure_of(message: str) -> tuple[str, str]:
    try:
        raise ValueError(message)
    except ValueError as exc:
        return "ValueError", "".join(traceback.format_exception(exc))


def fail(job_id: int, *, messages: tuple[str, ...] = ("bad payload",), now: datetime | None = None) -> None:
    """Fail a job for good after ``len(messages)`` attempts, each with its failure record."""
    now = now or timezone.now()
    job = ProcrastinateJob.objects.get(pk=job_id)
    for attempt, message in enumerate(messages, start=1):
        exception_type, text = _failure_of(message)
        JobFailure.objects.create(
            job_id=job_id,
            queue_name=job.queue_name,
            task_name=job.task_name,
            attempt=attempt,
            exception_type=exception_type,
            message=message,
            traceback=text,
            will_retry=attempt < len(messages),
            failed_at=now - timedelta(seconds=len(messages) - attempt),
        )
    start(job_id)
    _set_status(job_id, "failed")


def events_move(job_id: int, *, by: timedelta) -> None:
    """Shift a job's events into the past, as if it had happened ``by`` ago."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE procrastinate_events SET at = at - make_interval(secs => %s) WHERE job_id = %s",
            [by.total_seconds(), job_id],
        )


def status_of(job_id: int) -> str:
    return ProcrastinateJob.objects.values_list("status", flat=True).get(pk=job_id)


def heartbeat(
    *,
    age: timedelta = timedelta(0),
    queues: tuple[str, ...] | None = None,
    duties: dict[str, dict[str, Any]] | None = None,
    host: str = "test-host",
    pid: int = 4242,
) -> int:
    """Register a worker process as the worker does (its row and its process row), with a
    heartbeat ``age`` old, serving ``queues`` (default: all) and reporting ``duties``."""
    from kgc.queues import QUEUES

    queues = tuple(QUEUES) if queues is None else queues
    duties = duties if duties is not None else {"heartbeat": {"state": "running", "restarts": 0}}
    with connection.cursor() as cursor:
        cursor.execute(
            """WITH worker AS (
                   INSERT INTO procrastinate_workers (last_heartbeat)
                   VALUES (now() - make_interval(secs => %(age)s)) RETURNING id, last_heartbeat
               )
               INSERT INTO kgc_workerprocess
                      (worker_id, host, pid, queues, concurrency, started_at, duties, reported_at)
               SELECT id, %(host)s, %(pid)s, %(queues)s, '{}', last_heartbeat, %(duties)s, last_heartbeat FROM worker
               RETURNING worker_id""",
            {
                "age": age.total_seconds(),
                "host": host,
                "pid": pid,
                "queues": list(queues),
                "duties": json.dumps(duties),
            },
        )
        return cursor.fetchone()[0]


def scheduler_ticked(
    *, age: timedelta = timedelta(0), worker_id: int = 1, missed: dict[str, int] | None = None
) -> None:
    """Record a scheduler check ``age`` ago, as the leader's scheduler does, with the schedules
    whose latest tick it skipped (``missed``: schedule → the tick's Unix time)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO kgc_schedulertick (name, ticked_at, worker_id, missed)
               VALUES ('scheduler', now() - make_interval(secs => %s), %s, %s)
               ON CONFLICT (name) DO UPDATE SET ticked_at = excluded.ticked_at, missed = excluded.missed""",
            [age.total_seconds(), worker_id, json.dumps(missed or {})],
        )


def worker_process(
    *,
    host: str = "app-1",
    pid: int = 4242,
    queues: tuple[str, ...] = ("email",),
    concurrency: dict[str, int] | None = None,
    duties: dict[str, Any] | None = None,
    age: timedelta = timedelta(0),
) -> int:
    """A registered worker with its process row, as a worker writes them (heartbeat ``age`` old)."""
    worker_id = heartbeat(age=age, queues=queues, duties=duties or {}, host=host, pid=pid)
    WorkerProcess.objects.filter(worker_id=worker_id).update(
        concurrency=concurrency if concurrency is not None else dict.fromkeys(queues, 1),
        started_at=timezone.now() - timedelta(hours=1),
    )
    return worker_id


def lease(worker_id: int, *, name: str = "cluster", expires_in: timedelta = timedelta(seconds=15)) -> None:
    now = timezone.now()
    Leadership.objects.create(name=name, worker_id=worker_id, elected_at=now, expires_at=now + expires_in)


def run_on(job_id: int, worker_id: int) -> None:
    """The job is running on that worker (as a fetch leaves it)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s WHERE id = %s", [worker_id, job_id]
        )
