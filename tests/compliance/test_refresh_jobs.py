"""The refresh as jobs: the nightly fan-out, and one tenant's failure next to the others' success."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime

import pytest
from procrastinate.contrib.django.models import ProcrastinateJob

from compliance.models import ComplianceScore, Tenant
from compliance.tasks import refresh_all
from kgc.job_helpers import enqueue_compliance_refresh
from kgc.queue.models import JobFailure
from tests.factories import TenantFactory
from tests.helpers import manage_popen, subprocess_env


@pytest.mark.django_db
def test_nightly_tick_defers_one_refresh_per_active_tenant_for_its_local_date():
    paris, auckland = TenantFactory(timezone="Europe/Paris"), TenantFactory(timezone="Pacific/Auckland")
    TenantFactory(is_active=False)
    tick = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
    assert refresh_all(timestamp=int(tick.timestamp())) == 2
    jobs = ProcrastinateJob.objects.filter(task_name="compliance.refresh_tenant").order_by("id")
    assert [job.args for job in jobs] == [
        {"tenant_id": paris.pk, "triggered_by": "schedule", "as_of": "2026-11-29"},
        {"tenant_id": auckland.pk, "triggered_by": "schedule", "as_of": "2026-11-29"},
    ]
    assert {job.queue_name for job in jobs} == {"compliance"}


def _wait_for_compliance_queue(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not ProcrastinateJob.objects.filter(queue_name="compliance", status__in=["todo", "doing"]).exists():
            return
        time.sleep(0.2)
    raise AssertionError("the compliance jobs did not finish in time")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_failing_tenant_is_recorded_and_does_not_stop_the_others(make_client):
    first, failing, last = TenantFactory(), TenantFactory(), TenantFactory()
    for tenant in (first, failing, last):
        make_client(tenant)
    job_ids = [enqueue_compliance_refresh(t.pk, triggered_by="manual:test") for t in (first, failing, last)]
    # Deactivated after its job was queued: the job fails at once (UnknownTenant is permanent).
    Tenant.objects.filter(pk=failing.pk).update(is_active=False)
    worker = manage_popen(
        "runworkers",
        "--queues",
        "compliance",
        env=subprocess_env(KGC_RATE_LIMITS="compliance=off", KGC_SCHEDULER_CATCH_UP_HOURS="0"),
    )
    try:
        _wait_for_compliance_queue()
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    statuses = dict(ProcrastinateJob.objects.filter(id__in=job_ids).values_list("id", "status"))
    assert [statuses[job_id] for job_id in job_ids] == ["succeeded", "failed", "succeeded"], output
    assert set(ComplianceScore.objects.values_list("tenant_id", flat=True)) == {first.pk, last.pk}
    failure = JobFailure.objects.get(job_id=job_ids[1])
    assert failure.exception_type == "compliance.exceptions.UnknownTenant"
    assert f"tenant {failing.pk} is inactive" in failure.message
    assert failure.will_retry is False
