"""/healthz, /readyz and procrastinate's own healthchecks command."""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import pytest
from django.urls import reverse

from tests.helpers import manage, manage_popen
from tests.ops.conftest import heartbeat

pytestmark = pytest.mark.django_db


def test_healthz_answers_without_login(client):
    response = client.get(reverse("healthz"))
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_is_unavailable_without_a_worker_and_says_why(client):
    response = client.get(reverse("readyz"))
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "migrations": "ok", "workers": "no worker heartbeat in the last 60 s"},
    }


def test_readyz_ignores_a_worker_silent_for_over_a_minute(client):
    heartbeat(age=timedelta(minutes=2))
    assert client.get(reverse("readyz")).status_code == 503


def test_readyz_is_ready_with_a_fresh_heartbeat(client):
    heartbeat(age=timedelta(seconds=10))
    response = client.get(reverse("readyz"))
    assert (response.status_code, response.json()["status"]) == (200, "ok")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_readyz_is_ready_while_a_real_worker_runs(client):
    worker = manage_popen("runworkers", "--queues", "email")
    try:
        deadline = time.monotonic() + 60
        while client.get(reverse("readyz")).status_code != 200:
            assert worker.poll() is None, worker.stdout and worker.stdout.read()
            assert time.monotonic() < deadline, "no heartbeat within 60 s"
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
