"""Writes of the compliance domain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from compliance.models import Tenant
from compliance.selectors import tenant_local_date
from kgc import jobs

REFRESH_TASK = "compliance.refresh_tenant"
# A tenant with a refresh already waiting gets no second one (job_helpers returns the first).
REFRESH_LOCK = "compliance-refresh:{tenant_id}"


def tenant_jobs_fan_out(
    *,
    task_name: str,
    at: datetime,
    kwargs: dict[str, Any] | None = None,
    priority: int | None = None,
    queueing_lock: str | None = None,
) -> list[int]:
    """Defer ``task_name`` once per active tenant, each for the tenant's own local date at ``at``."""
    tenants = Tenant.objects.filter(is_active=True).only("pk", "timezone").order_by("pk")
    return jobs.jobs_fan_out(
        task_name=task_name,
        kwargs_by_tenant={t.pk: {**(kwargs or {}), "as_of": tenant_local_date(t, at).isoformat()} for t in tenants},
        priority=priority,
        queueing_lock=queueing_lock,
    )


def compliance_refresh_fan_out(*, at: datetime, triggered_by: str, priority: int | None = None) -> list[int]:
    return tenant_jobs_fan_out(
        task_name=REFRESH_TASK,
        at=at,
        kwargs={"triggered_by": triggered_by},
        priority=priority,
        queueing_lock=REFRESH_LOCK,
    )
