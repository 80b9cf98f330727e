"""/metrics: Prometheus' text format, derived from the database, behind a token or localhost."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from kgc.queue import jobs
from tests.factories import TenantFactory
from tests.kgc.console import prometheus
from tests.kgc.console.conftest import (
    defer,
    events_move,
    fail,
    heartbeat,
    retry,
    scheduler_ticked,
    succeed,
)

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


# The names scrapers, dashboards and deploy/alerts.yml know: a rename is a breaking change.
FAMILIES = {
    "kgc_queue_jobs": "gauge",
    "kgc_queue_paused": "gauge",
    "kgc_queue_oldest_waiting_age_seconds": "gauge",
    "kgc_jobs_succeeded_total": "counter",
    "kgc_jobs_failed_total": "counter",
    "kgc_jobs_retried_total": "counter",
    "kgc_job_duration_seconds": "histogram",
    "kgc_emails_sent_total": "counter",
    "kgc_emails": "gauge",
    "kgc_workers_alive": "gauge",
    "kgc_worker_latest_heartbeat_age_seconds": "gauge",
    "kgc_worker_heartbeat_age_seconds": "gauge",
    "kgc_queue_workers": "gauge",
    "kgc_worker_duty_up": "gauge",
    "kgc_worker_duty_failing_seconds": "gauge",
    "kgc_worker_duty_restarts_total": "counter",
    "kgc_leader_info": "gauge",
    "kgc_leader_lease_remaining_seconds": "gauge",
    "kgc_scheduler_last_tick_age_seconds": "gauge",
    "kgc_scheduler_missed_ticks": "gauge",
}


def test_the_families_keep_their_names_and_types(client):
    families = _scrape(client)
    assert {name: family.kind for name, family in families.items()} == FAMILIES


def test_openmetrics_is_served_to_a_scraper_that_asks_for_it(client):
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    heartbeat(host="w1", pid=11)
    succeed(defer("compliance"))
    response = client.get(
        reverse("metrics"),
        REMOTE_ADDR="127.0.0.1",
        HTTP_AUTHORIZATION="Bearer scrape-token",
        HTTP_ACCEPT="application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    )
    assert response["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert "Accept" in response["Vary"]
    text = response.content.decode()
    assert text.endswith("# EOF\n")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)  # OpenMetrics' own strict parser
        for sample in family.samples
    }
    assert samples[("kgc_jobs_succeeded_total", (("queue", "compliance"),))] == 1
    assert samples[("kgc_workers_alive", ())] == 1


def test_without_an_accept_header_the_text_format_is_served(client):
    response = client.get(reverse("metrics"), REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION="Bearer scrape-token")
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# EOF" not in response.content.decode()


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


def test_counters_count_successes_failures_and_retries(client):
    succeed(defer("filing-reminder"))
    succeed(defer("filing-reminder"))
    flaky = defer("filing-reminder")
    retry(flaky)
    retry(flaky)
    fail(flaky, messages=("first", "second", "third"))
    families = _scrape(client)
    assert prometheus.value(families, "kgc_jobs_succeeded_total", queue="filing-reminder") == 2
    assert prometheus.value(families, "kgc_jobs_failed_total", queue="filing-reminder") == 1
    assert prometheus.value(families, "kgc_jobs_retried_total", queue="filing-reminder") == 2


def test_duration_histogram_counts_the_run_times_workers_measured(client, sql):
    from kgc.queue.completer import finish_params
    from kgc.queue.sql import FINISH
    from tests.kgc.queue.test_finish import claimed, outcome

    worker = heartbeat()
    quick, slow = (claimed(sql, defer("filing-reminder"), worker) for _ in range(2))
    ran = [replace(outcome(quick), duration=0.05), replace(outcome(slow), duration=3.2)]
    sql(FINISH, finish_params(ran, keep_locks=True))  # as the worker's completer writes them
    families = _scrape(client)
    bucket = {
        le: prometheus.value(families, "kgc_job_duration_seconds_bucket", queue="filing-reminder", le=le)
        for le in ("0.1", "1", "5", "+Inf")
    }
    assert bucket == {"0.1": 1, "1": 1, "5": 2, "+Inf": 2}
    assert prometheus.value(families, "kgc_job_duration_seconds_count", queue="filing-reminder") == 2
    assert prometheus.value(families, "kgc_job_duration_seconds_sum", queue="filing-reminder") == 3.25
    assert prometheus.value(families, "kgc_jobs_succeeded_total", queue="filing-reminder") == 2


def test_counters_keep_their_counts_when_retention_deletes_the_jobs(client):
    """Jobs finished two hours ago, then deleted by retention: the counters do not go down."""
    succeed(defer("compliance"))
    fail(defer("compliance"))
    before = _scrape(client)
    jobs.cleanup_queue(
        "compliance", completed_age=timedelta(0), failed_age=timedelta(0), now=timezone.now() + timedelta(hours=2)
    )
    assert not jobs.get_queue_stats("compliance").completed
    after = _scrape(client)
    for name in ("kgc_jobs_succeeded_total", "kgc_jobs_failed_total"):
        assert prometheus.value(after, name, queue="compliance") == prometheus.value(before, name, queue="compliance")
    assert prometheus.value(after, "kgc_jobs_succeeded_total", queue="compliance") == 1


def test_the_email_queues_counters_are_its_emails(client):
    from notifications.models import OutboundEmail

    tenant: Any = TenantFactory()
    for index, status in enumerate(["sent", "sent", "suppressed", "failed", "retrying", "queued"]):
        OutboundEmail.objects.create(
            tenant=tenant, to_email=f"a{index}@example.com", subject="s", template="document-expiry",
            status=status, idempotency_key=f"key-{index}",
        )  # fmt: skip
    families = _scrape(client)
    assert prometheus.value(families, "kgc_jobs_succeeded_total", queue="email") == 3  # sent and suppressed
    assert prometheus.value(families, "kgc_jobs_failed_total", queue="email") == 1
    assert prometheus.value(families, "kgc_jobs_retried_total", queue="email") == 1


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
