"""/metrics: Prometheus' text format, derived from the database, behind a token or localhost."""

from __future__ import annotations

import shutil
import subprocess
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from kgc.console import metrics
from kgc.queue import jobs
from tests.factories import TenantFactory
from tests.kgc.console import prometheus
from tests.kgc.console.conftest import defer, events_move, fail, heartbeat, scheduler_ticked, succeed

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _metrics_token(settings):
    settings.KGC_METRICS_TOKEN = "scrape-token"


def _scrape(client, **headers) -> dict[str, prometheus.Family]:
    headers.setdefault("HTTP_AUTHORIZATION", "Bearer scrape-token")
    response = client.get(reverse("metrics"), REMOTE_ADDR="127.0.0.1", **headers)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return prometheus.parse(response.content.decode())


def test_every_family_has_help_and_type(client):
    families = _scrape(client)
    assert families
    assert all(family.help and family.kind for family in families.values())


def test_queue_states_are_counted(client):
    defer("filing-reminder")
    defer("filing-reminder")
    fail(defer("filing-reminder"))
    families = _scrape(client)
    assert prometheus.value(families, "kgc_queue_jobs", queue="filing-reminder", state="waiting") == 2
    assert prometheus.value(families, "kgc_queue_jobs", queue="filing-reminder", state="failed") == 1


def test_a_paused_queue_reports_its_flag_and_paused_jobs(client):
    defer("compliance")
    jobs.pause_queue("compliance")
    families = _scrape(client)
    assert prometheus.value(families, "kgc_queue_paused", queue="compliance") == 1
    assert prometheus.value(families, "kgc_queue_jobs", queue="compliance", state="paused") == 1


def test_oldest_waiting_age_is_that_of_the_first_job_in_line(client):
    first = defer("filing-reminder")
    defer("filing-reminder")
    events_move(first, by=timedelta(minutes=20))
    age = prometheus.value(_scrape(client), "kgc_queue_oldest_waiting_age_seconds", queue="filing-reminder")
    assert 20 * 60 <= age < 21 * 60


def test_a_delayed_job_is_not_waiting_yet(client):
    jobs.job_defer(task_name="tests.noop_filing_reminder", kwargs={}, schedule_in=timedelta(hours=1))
    assert prometheus.value(_scrape(client), "kgc_queue_oldest_waiting_age_seconds", queue="filing-reminder") == 0


def test_counters_count_this_hours_successes_failures_and_retries(client):
    succeed(defer("filing-reminder"))
    succeed(defer("filing-reminder"))
    fail(defer("filing-reminder"), messages=("first", "second", "third"))
    families = _scrape(client)
    assert prometheus.value(families, "kgc_jobs_succeeded_total", queue="filing-reminder") == 2
    assert prometheus.value(families, "kgc_jobs_failed_total", queue="filing-reminder") == 1
    assert prometheus.value(families, "kgc_jobs_retried_total", queue="filing-reminder") == 2


def test_duration_histogram_places_each_run_in_its_bucket(client):
    quick, slow = defer("email"), defer("email")
    succeed(quick)
    succeed(slow)
    with connection.cursor() as cursor:  # slow ran for 3 seconds: its start moves back
        cursor.execute(
            "UPDATE procrastinate_events SET at = at - interval '3 seconds' WHERE job_id = %s AND type = 'started'",
            [slow],
        )
    families = _scrape(client)
    bucket = {
        le: prometheus.value(families, "kgc_job_duration_seconds_bucket", queue="email", le=le)
        for le in ("0.1", "1", "5", "+Inf")
    }
    assert bucket == {"0.1": 1, "1": 1, "5": 2, "+Inf": 2}
    assert prometheus.value(families, "kgc_job_duration_seconds_count", queue="email") == 2
    assert 3 <= prometheus.value(families, "kgc_job_duration_seconds_sum", queue="email") < 4


def test_counters_leave_out_earlier_hours():
    job_id = defer("email")
    succeed(job_id)
    now = timezone.now()
    events_move(job_id, by=timedelta(hours=2))
    totals = metrics.job_totals(since=metrics.hour_start(now), now=now)
    assert totals.succeeded["email"] == 0


def test_emails_sent_and_failed_are_reported(client):
    from notifications.models import OutboundEmail

    tenant: Any = TenantFactory()
    for index, status in enumerate(["sent", "sent", "failed", "queued"]):
        OutboundEmail.objects.create(
            tenant=tenant,
            to_email=f"a{index}@example.com",
            subject="s",
            template="document-expiry",
            status=status,
            idempotency_key=f"key-{index}",
            sent_at=timezone.now() if status == "sent" else None,
        )
    families = _scrape(client)
    assert prometheus.value(families, "kgc_emails_sent_total") == 2
    assert prometheus.value(families, "kgc_emails", status="failed") == 1
    assert prometheus.value(families, "kgc_emails", status="queued") == 1


def test_workers_alive_counts_fresh_heartbeats_only(client):
    live = heartbeat(host="w1", pid=11)
    heartbeat(age=timedelta(minutes=3))
    families = _scrape(client)
    assert prometheus.value(families, "kgc_workers_alive") == 1
    assert prometheus.value(families, "kgc_worker_heartbeat_age_seconds", worker=str(live), host="w1", pid="11") < 5
    assert prometheus.value(families, "kgc_worker_latest_heartbeat_age_seconds") < 5


def test_no_worker_means_an_infinite_heartbeat_age(client):
    assert prometheus.value(_scrape(client), "kgc_worker_latest_heartbeat_age_seconds") == float("inf")


def test_each_queue_counts_its_live_workers(client):
    heartbeat(queues=("email",))
    heartbeat(queues=("email", "compliance"))
    families = _scrape(client)
    assert prometheus.value(families, "kgc_queue_workers", queue="email") == 2
    assert prometheus.value(families, "kgc_queue_workers", queue="compliance") == 1
    assert prometheus.value(families, "kgc_queue_workers", queue="filing-reminder") == 0


def test_each_duty_reports_its_state_and_restarts(client):
    since = (timezone.now() - timedelta(seconds=30)).isoformat()
    worker = heartbeat(
        duties={
            "listener": {"state": "failing", "restarts": 4, "failing_since": since, "last_error": "x"},
            "fetch": {"state": "running", "restarts": 1},
        },
        host="w1",
        pid=11,
    )
    families = _scrape(client)
    labels = {"worker": str(worker), "host": "w1", "pid": "11"}
    assert prometheus.value(families, "kgc_worker_duty_up", duty="listener", **labels) == 0
    assert prometheus.value(families, "kgc_worker_duty_up", duty="fetch", **labels) == 1
    assert prometheus.value(families, "kgc_worker_duty_failing_seconds", duty="listener", **labels) >= 30
    assert prometheus.value(families, "kgc_worker_duty_restarts_total", duty="listener", **labels) == 4


def test_the_leader_and_the_scheduler_are_reported(client):
    worker = heartbeat(host="w1", pid=11)
    scheduler_ticked(age=timedelta(seconds=8), worker_id=worker)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO kgc_leadership VALUES ('cluster', %s, now(), now() + interval '6 seconds')", [worker]
        )
    families = _scrape(client)
    assert prometheus.value(families, "kgc_leader_info", worker=str(worker), host="w1", pid="11") == 1
    assert 0 < prometheus.value(families, "kgc_leader_lease_remaining_seconds") <= 6
    assert 8 <= prometheus.value(families, "kgc_scheduler_last_tick_age_seconds") < 60


def test_schedules_that_missed_their_latest_tick_are_counted(client):
    scheduler_ticked(missed={"compliance.refresh_all (nightly)": 1_780_000_000})
    assert prometheus.value(_scrape(client), "kgc_scheduler_missed_ticks") == 1


def test_no_leader_and_no_scheduler_run_are_reported(client):
    families = _scrape(client)
    assert families["kgc_leader_info"].samples == {}
    assert prometheus.value(families, "kgc_leader_lease_remaining_seconds") == 0
    assert prometheus.value(families, "kgc_scheduler_last_tick_age_seconds") == float("inf")


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (apt-get install prometheus)")
def test_promtool_accepts_the_exposition(client):
    fail(defer("email"))
    body = client.get(reverse("metrics"), REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer scrape-token").content
    result = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Who may read it ------------------------------------------------------------------------


def test_without_a_token_a_remote_address_is_refused(client, settings):
    settings.KGC_METRICS_TOKEN = ""
    assert client.get(reverse("metrics"), REMOTE_ADDR="10.1.2.3").status_code == 403


def test_without_a_token_outside_debug_localhost_is_refused_too(client, settings):
    """Behind a reverse proxy on the same host every client comes from loopback."""
    settings.KGC_METRICS_TOKEN = ""
    response = client.get(reverse("metrics"), REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 403
    assert b"KGC_METRICS_TOKEN" in response.content


def test_without_a_token_in_debug_localhost_may_read(client, settings):
    settings.KGC_METRICS_TOKEN = ""
    settings.DEBUG = True
    assert client.get(reverse("metrics"), REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get(reverse("metrics"), REMOTE_ADDR="10.1.2.3").status_code == 403


def test_with_a_token_localhost_needs_it_too(client, settings):
    settings.KGC_METRICS_TOKEN = "s3cret"
    response = client.get(reverse("metrics"), REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_with_a_token_the_right_bearer_is_let_in_from_anywhere(client, settings):
    settings.KGC_METRICS_TOKEN = "s3cret"
    response = client.get(reverse("metrics"), REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer s3cret")
    assert response.status_code == 200


def test_with_a_token_a_wrong_bearer_is_refused(client, settings):
    settings.KGC_METRICS_TOKEN = "s3cret"
    response = client.get(reverse("metrics"), REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer guess")
    assert response.status_code == 401
