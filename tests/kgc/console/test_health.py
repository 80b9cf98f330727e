"""/healthz, /readyz and procrastinate's own healthchecks command."""

from __future__ import annotations

import os
import signal
import socket
import time
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from tests.helpers import manage, manage_popen
from tests.kgc.console.conftest import heartbeat, scheduler_ticked

pytestmark = pytest.mark.django_db

PRODUCT_QUEUES = ("compliance", "expiry-notification", "filing-reminder", "email")


def _failing(seconds: float, error: str = "OperationalError: connection refused") -> dict:
    since = datetime.now(tz=UTC) - timedelta(seconds=seconds)
    return {"state": "failing", "restarts": 7, "failing_since": since.isoformat(), "last_error": error}


PROBE_TOKEN = "probe-token"  # noqa: S105 - a test's own


@pytest.fixture(autouse=True)
def _metrics_token(settings):
    settings.KGC_METRICS_TOKEN = PROBE_TOKEN


def readyz(client, token: str | None = PROBE_TOKEN):
    """/readyz as a caller with the metrics token (the details), or without one."""
    return client.get(reverse("readyz"), **({"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}))


def test_healthz_answers_without_login(client):
    response = client.get(reverse("healthz"))
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_is_unavailable_without_a_worker_and_says_why(client):
    response = readyz(client)
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {
            "database": "ok",
            "migrations": "ok",
            "workers": "no worker heartbeat in the last 20 s",
            "scheduler": "the scheduler has never run",
            "duties": "ok",
        },
    }


def test_readyz_tells_anyone_only_the_status_and_which_checks_fail(client):
    heartbeat(duties={"listener": _failing(90, "OperationalError: connection to db.internal failed")}, host="w1")
    scheduler_ticked(age=timedelta(minutes=3))
    for token in (None, "a guess"):
        response = readyz(client, token)
        assert response.status_code == 503
        assert response.json() == {
            "status": "unavailable",
            "checks": {
                "database": "ok",
                "migrations": "ok",
                "workers": "ok",
                "scheduler": "failing",
                "duties": "failing",
            },
        }
        assert b"w1" not in response.content and b"db.internal" not in response.content


def test_readyz_is_ready_with_a_live_worker_and_a_recent_scheduler_check(client):
    heartbeat(age=timedelta(seconds=3))
    scheduler_ticked(age=timedelta(seconds=5))
    response = readyz(client)
    assert (response.status_code, response.json()["status"]) == (200, "ok")


def test_readyz_ignores_a_worker_silent_past_the_dead_cutoff(client):
    heartbeat(age=timedelta(seconds=25))
    scheduler_ticked()
    assert readyz(client).json()["checks"]["workers"] == "no worker heartbeat in the last 20 s"


def test_readyz_names_a_product_queue_no_live_worker_serves(client):
    heartbeat(queues=("email", "maintenance"))
    heartbeat(queues=("compliance",), age=timedelta(minutes=5))  # dead: does not count
    scheduler_ticked()
    response = readyz(client)
    assert response.status_code == 503
    assert (
        response.json()["checks"]["workers"] == "no live worker serves compliance, expiry-notification, filing-reminder"
    )


def test_readyz_is_unavailable_when_the_scheduler_is_late(client):
    heartbeat()
    scheduler_ticked(age=timedelta(minutes=3))
    response = readyz(client)
    assert response.status_code == 503
    assert response.json()["checks"]["scheduler"].startswith("the scheduler has not run for 180 s")


def test_readyz_names_a_schedule_whose_latest_tick_was_skipped(client):
    heartbeat()
    nightly = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    scheduler_ticked(missed={"compliance.refresh_all (nightly)": int(nightly.timestamp())})
    response = readyz(client)
    assert response.status_code == 503
    assert response.json()["checks"]["scheduler"] == (
        "the scheduler skipped a tick too late to catch up (KGC_SCHEDULER_CATCH_UP_HOURS): "
        "compliance.refresh_all (nightly) at 2026-12-01 02:00 UTC"
    )


def test_readyz_names_a_duty_failing_for_longer_than_the_threshold(client):
    worker = heartbeat(duties={"heartbeat": {"state": "running"}, "listener": _failing(90)}, host="w1", pid=77)
    scheduler_ticked()
    response = readyz(client)
    assert response.status_code == 503
    assert response.json()["checks"]["duties"] == (
        f"worker {worker} (w1:77): listener failing for 90 s (OperationalError: connection refused)"
    )


def test_readyz_tolerates_a_duty_failing_for_less_than_the_threshold(client):
    heartbeat(duties={"listener": _failing(10)})
    scheduler_ticked()
    assert readyz(client).status_code == 200


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_readyz_is_ready_while_a_real_worker_runs(client):
    worker = manage_popen("runworkers", "--processes", "1")
    try:
        deadline = time.monotonic() + 60
        while readyz(client).status_code != 200:
            assert worker.poll() is None, worker.stdout and worker.stdout.read()
            assert time.monotonic() < deadline, readyz(client).json()
            time.sleep(0.5)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)


@pytest.mark.django_db(transaction=True)
def test_procrastinate_healthchecks_still_pass():
    result = manage("procrastinate", "healthchecks")
    assert result.returncode == 0, result.stderr
    assert "Database connection: OK" in result.stdout
    assert "Migrations: OK" in result.stdout


def test_readyz_measures_a_failing_duty_on_the_databases_clock_not_the_workers(client):
    """A worker whose clock is an hour fast still reports how long the duty has been failing."""
    wrong_clock = (datetime.now(tz=UTC) + timedelta(hours=1)).isoformat()
    failing = {"state": "failing", "restarts": 3, "failing_since": wrong_clock, "failing_for": 90, "last_error": "x"}
    worker = heartbeat(duties={"fetch": failing}, host="w1", pid=77)
    scheduler_ticked()
    assert readyz(client).json()["checks"]["duties"] == f"worker {worker} (w1:77): fetch failing for 90 s (x)"


# --- manage.py health --worker: the worker processes of this host (a worker container's check) ---


def health_worker() -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("health", "--worker", stdout=out)
    except SystemExit as exit_:
        return int(exit_.code or 0), out.getvalue()
    return 0, out.getvalue()


def test_health_worker_is_ok_for_a_beating_worker_of_this_host():
    worker = heartbeat(host=socket.gethostname(), pid=os.getpid(), duties={"fetch": {"state": "running"}})
    heartbeat(host="elsewhere", pid=1, age=timedelta(minutes=5))  # another host's dead worker: not ours
    code, out = health_worker()
    assert code == 0, out
    assert out.strip() == f"worker {worker} ({socket.gethostname()}:{os.getpid()})  ok"


def test_health_worker_fails_without_a_worker_of_this_host():
    heartbeat(host="another-container", pid=os.getpid())
    code, out = health_worker()
    assert code == 1
    assert f"no worker process of this host ({socket.gethostname()}) is registered" in out


def test_health_worker_fails_when_its_heartbeat_is_stale():
    heartbeat(host=socket.gethostname(), pid=os.getpid(), age=timedelta(seconds=40))
    code, out = health_worker()
    assert code == 1
    assert "no heartbeat for 40 s" in out


def test_health_worker_fails_when_a_duty_keeps_failing():
    heartbeat(host=socket.gethostname(), pid=os.getpid(), duties={"listener": _failing(90)})
    code, out = health_worker()
    assert code == 1
    assert "listener failing for 90 s (OperationalError: connection refused)" in out
