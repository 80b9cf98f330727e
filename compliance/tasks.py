"""Jobs of the compliance queue: the nightly refresh and a refresh on demand."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.utils import timezone
from procrastinate.contrib.django import app

from compliance import services
from compliance.selectors import tenant_get, tenant_local_date, tick_time
from kgc.queue import jobs
from kgc.queues import COMPLIANCE, MAINTENANCE, SCHEDULES


@app.periodic(cron=SCHEDULES["compliance.refresh_all"], periodic_id="nightly")
@jobs.task(queue=MAINTENANCE, name="compliance.refresh_all")
def refresh_all(timestamp: int | None = None, triggered_by: str = "schedule", priority: int | None = None) -> int:
    """Fan out one refresh per active tenant, each for its own local date at the tick."""
    jobs_ids = services.compliance_refresh_fan_out(
        at=tick_time(timestamp, timezone.now()), triggered_by=triggered_by, priority=priority
    )
    return len(jobs_ids)


@jobs.task(queue=COMPLIANCE, name=services.REFRESH_TASK)
def refresh_tenant(tenant_id: int, triggered_by: str = "manual", as_of: str | None = None) -> dict[str, Any]:
    """Score one tenant's clients for ``as_of`` (default: the tenant's today). An inactive or
    unknown tenant fails the job at once (``UnknownTenant`` is permanent), with its reason."""
    tenant = tenant_get(tenant_id)
    day = date.fromisoformat(as_of) if as_of else tenant_local_date(tenant, timezone.now())
    return services.refresh_tenant_compliance(tenant=tenant, as_of=day, triggered_by=triggered_by).summary()
