"""End to end: a queued expiry check runs in a real worker process."""

from __future__ import annotations

import pytest
from django.utils import timezone
from procrastinate.contrib.django.models import ProcrastinateJob

from compliance.selectors import tenant_local_date
from kgc.job_helpers import enqueue_expiry_check
from notifications.models import Notification, OutboundEmail
from tests.notifications.reminders.conftest import wait_for


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_enqueued_expiry_check_runs_in_a_worker_and_notifies(tenant, staff, document_expiring, worker):
    today = tenant_local_date(tenant, timezone.now())
    document = document_expiring(tenant, 10, as_of=today)
    job_id = enqueue_expiry_check(tenant.pk)
    worker("expiry-notification")
    status = wait_for(
        lambda: (
            ProcrastinateJob.objects.filter(pk=job_id, status__in=["succeeded", "failed"])
            .values_list("status", flat=True)
            .first()
        ),
        timeout=90,
        message="the expiry job to finish",
    )
    assert status == "succeeded"
    keys = set(Notification.objects.values_list("dedupe_key", flat=True))
    assert keys == {
        f"document_expiry:{document.pk}@{document.expires_on}:14:{staff[role].pk}"
        for role in ("admin", "manager", "compliance_officer")
    }
    assert OutboundEmail.objects.filter(status="queued").count() == 3
