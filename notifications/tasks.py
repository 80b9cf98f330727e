"""Jobs of the expiry-notification, filing-reminder and email queues."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.utils import timezone
from procrastinate.contrib.django import app

from compliance.selectors import tenant_get, tenant_local_date, tick_time
from compliance.services import tenant_jobs_fan_out
from kgc.queue import jobs
from kgc.queues import EMAIL, EXPIRY_NOTIFICATION, FILING_REMINDER, MAINTENANCE, SCHEDULES
from notifications import delivery, digests, mornings, reminders
from notifications.services import DIGEST_TASK, ESCALATION_TASK, EXPIRY_TASK, FILING_REMINDER_TASK, SEND_EMAIL_TASK


def _as_of(tenant_id: int, as_of: str | None) -> tuple[Any, date]:
    # A tenant deactivated after the fan-out gets nothing (the services skip it); that is
    # not a failure worth an operator's attention. An unknown id still fails the job.
    tenant = tenant_get(tenant_id, active_only=False)
    return tenant, date.fromisoformat(as_of) if as_of else tenant_local_date(tenant, timezone.now())


@app.periodic(cron=SCHEDULES["notifications.morning_checks_all"], periodic_id="hourly")
@jobs.task(queue=MAINTENANCE, name="notifications.morning_checks_all")
def morning_checks_all(timestamp: int | None = None) -> int:
    """Each tenant's expiry, filing and overdue checks at its own KGC_REMINDER_HOUR (notifications/mornings.py)."""
    return len(mornings.mornings_fan_out(at=tick_time(timestamp, timezone.now())))


# Every active tenant now, whatever its hour (enqueue_expiry_check() without a tenant, the API).
@jobs.task(queue=MAINTENANCE, name="notifications.check_expiry_all")
def check_expiry_all(timestamp: int | None = None) -> int:
    return len(tenant_jobs_fan_out(task_name=EXPIRY_TASK, at=tick_time(timestamp, timezone.now())))


@jobs.task(queue=EXPIRY_NOTIFICATION, name=EXPIRY_TASK)
def check_expiry(tenant_id: int, as_of: str | None = None) -> dict[str, Any]:
    tenant, day = _as_of(tenant_id, as_of)
    return reminders.expiry_reminders_send(tenant=tenant, as_of=day).summary()


# Every active tenant now, whatever its hour (enqueue_filing_reminder() without a tenant, the API).
@jobs.task(queue=MAINTENANCE, name="notifications.send_filing_reminders_all")
def send_filing_reminders_all(timestamp: int | None = None) -> int:
    return len(tenant_jobs_fan_out(task_name=FILING_REMINDER_TASK, at=tick_time(timestamp, timezone.now())))


@jobs.task(queue=FILING_REMINDER, name=FILING_REMINDER_TASK)
def send_filing_reminders(tenant_id: int, as_of: str | None = None) -> dict[str, Any]:
    tenant, day = _as_of(tenant_id, as_of)
    return reminders.filing_reminders_send(tenant=tenant, as_of=day).summary()


@jobs.task(queue=FILING_REMINDER, name=ESCALATION_TASK)
def escalate_overdue_filings(tenant_id: int, as_of: str | None = None) -> dict[str, Any]:
    tenant, day = _as_of(tenant_id, as_of)
    return reminders.filing_escalations_send(tenant=tenant, as_of=day).summary()


@app.periodic(cron=SCHEDULES["notifications.send_digests_all"], periodic_id="hourly")
@jobs.task(queue=MAINTENANCE, name="notifications.send_digests_all")
def send_digests_all(timestamp: int | None = None) -> int:
    return len(digests.digests_fan_out(at=tick_time(timestamp, timezone.now())))


# Digests are notifications' work, like the expiry reminders; they share that queue.
@jobs.task(queue=EXPIRY_NOTIFICATION, name=DIGEST_TASK)
def send_digests(tenant_id: int, as_of: str | None = None) -> dict[str, Any]:
    tenant, day = _as_of(tenant_id, as_of)
    return digests.digests_send(tenant=tenant, as_of=day).summary()


# Send jobs of an earlier release (before the outbox): one still run sends nothing itself.
@jobs.task(queue=EMAIL, name=SEND_EMAIL_TASK)
def send_email(outbound_email_id: int, tenant_id: int | None = None) -> str:
    """Say where a stored email stands: the outbox sends it (notifications/delivery.py)."""
    return delivery.send_job_run(outbound_email_id=outbound_email_id, tenant_id=tenant_id)
