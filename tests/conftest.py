from __future__ import annotations

import pytest
from django.db import connection, connections

from tests.factories import MembershipFactory, TenantFactory


@pytest.fixture
def tenant(db):
    return TenantFactory()


@pytest.fixture
def member_of(db):
    """``member_of(tenant, role)`` creates a user with that role in that tenant."""

    def make(tenant, role="admin", **user_fields):
        return MembershipFactory(tenant=tenant, role=role, **({"user__" + k: v for k, v in user_fields.items()})).user

    return make


# procrastinate's models are unmanaged, so Django's flush after a transactional test
# leaves its tables alone: empty them here, or jobs and workers leak into the next test.
PROCRASTINATE_TABLES = "procrastinate_jobs, procrastinate_events, procrastinate_periodic_defers, procrastinate_workers"


@pytest.fixture(autouse=True)
def _procrastinate_tables_emptied_after_transactional_tests(request, django_db_blocker):
    yield
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or (marker and marker.kwargs.get("transaction"))
    if transactional:
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {PROCRASTINATE_TABLES}, kgc_jobcountdelta RESTART IDENTITY CASCADE")


@pytest.fixture
def failed_send_job(tenant, member_of):
    """``failed_send_job(delivery_unknown=...)``: a notification email failed for good, with
    the failed send job of an earlier release (one job per email); returns ``(job id, email)``.

    With ``delivery_unknown`` its sender stopped mid-send: the email failed as "delivery unknown".
    """
    from kgc.queue import jobs
    from notifications.models import OutboundEmail
    from notifications.services import SEND_EMAIL_TASK, NotificationDraft, notifications_deliver

    counter = iter(range(1, 1_000))

    def make(*, delivery_unknown: bool):
        user = member_of(tenant, "admin")
        key = f"test:send-job:{next(counter)}"
        draft = NotificationDraft(
            recipient_id=user.pk,
            recipient_email=user.email,
            recipient_name=user.get_full_name(),
            kind="compliance_alert",
            title="ACME Corp: compliance level dropped to amber",
            body="...",
            dedupe_key=key,
            email_template="compliance-alert",
            email_subject="Compliance alert: ACME Corp is now amber",
            data={
                "clientName": "ACME Corp",
                "complianceScore": 65,
                "complianceLevel": "amber",
                "issues": [],
                "recommendations": [],
            },
        )
        notifications_deliver(tenant=tenant, drafts=[draft])
        email = OutboundEmail.objects.get(notification__dedupe_key=key)
        if delivery_unknown:
            OutboundEmail.objects.filter(pk=email.pk).update(
                status="failed", attempts=1, delivery_unknown=True, last_error="delivery unknown: the worker stopped"
            )
        else:
            OutboundEmail.objects.filter(pk=email.pk).update(status="failed", last_error="SMTP 550 5.7.1 blocked")
        job_id, _ = jobs.job_defer(
            task_name=SEND_EMAIL_TASK, kwargs={"outbound_email_id": email.pk, "tenant_id": tenant.pk}
        )
        with connection.cursor() as cursor:
            cursor.execute("UPDATE procrastinate_jobs SET status = 'doing', attempts = 1 WHERE id = %s", [job_id])
            cursor.execute("UPDATE procrastinate_jobs SET status = 'failed' WHERE id = %s", [job_id])
        email.refresh_from_db()
        return job_id, email

    return make


@pytest.fixture
def spans():
    """Tracing on in this process for one test, as ``kgc/telemetry.py`` turns it on (Django's and
    psycopg's instrumentations too), with the finished spans kept in memory:
    ``spans.get_finished_spans()``."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from kgc import telemetry

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": "kgc-web"}))  # the web process's part
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    opened = {alias: connections[alias].connection for alias in connections}
    telemetry.tracing_on(provider)
    yield exporter
    telemetry.tracing_off()
    for alias in connections:
        # A connection opened while psycopg was instrumented would trace its queries for good.
        conn = connections[alias]
        if conn.connection is not None and conn.connection is not opened[alias] and not conn.in_atomic_block:
            conn.close()
    provider.shutdown()
