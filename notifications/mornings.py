"""Each firm's own morning: the expiry, filing and overdue checks at ``KGC_REMINDER_HOUR`` local time.

The seed ran the morning checks from one cron at 08:00 UTC for every firm: in Auckland
that is 21:00, and in Kolkata and Nairobi it came after the 09:00 local digest, so every
item waited a day. Now an hourly tick (``notifications.morning_checks_all``) picks the
active tenants whose reminder hour has come on their local day and defers, once per
tenant and local day (``MorningRun``), that day's three checks:

* ``notifications.check_expiry`` (documents expiring),
* ``notifications.send_filing_reminders`` (filings due),
* ``notifications.escalate_overdue_filings`` (filings overdue).

A tenant in UTC gets them at 08:00 UTC, as from the seed's ``0 8 * * *``. Like the
digests' fan-out, a tick missed while no worker was up is caught up by the next one the
same local day (the scheduler defers missed ticks within ``KGC_SCHEDULER_CATCH_UP_HOURS``);
a day missed until local midnight is not run late, and the next day's run catches up
what it missed (the crossing rule sends the threshold then due).
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction

from compliance.models import Tenant
from kgc.queue import jobs
from notifications.models import MorningRun
from notifications.services import ESCALATION_TASK, EXPIRY_TASK, FILING_REMINDER_TASK

MORNING_TASKS = (EXPIRY_TASK, FILING_REMINDER_TASK, ESCALATION_TASK)
RUNS_KEPT = timedelta(days=7)

# At most one run per tenant and local day: only the tenants inserted here get their jobs.
_RUNS_CLAIM_SQL = """
INSERT INTO notifications_morningrun (tenant_id, local_date, created_at)
SELECT tenant_id, local_date, now()
  FROM jsonb_to_recordset(%(due)s::jsonb) AS due(tenant_id bigint, local_date date)
ON CONFLICT (tenant_id, local_date) DO NOTHING
RETURNING tenant_id, local_date
"""


def morning_day_due(*, tenant: Tenant, at: datetime, hour: int) -> date | None:
    """The tenant-local day whose morning checks are due at ``at`` (its reminder hour has come), or None."""
    local = at.astimezone(tenant.zone)
    return local.date() if local.hour >= hour else None


def mornings_fan_out(*, at: datetime) -> list[int]:
    """Defer each active tenant's morning checks for its local day, from its ``KGC_REMINDER_HOUR``
    at ``at`` on; at most once per tenant and local day. Return the job ids (three per tenant).

    A constant number of queries plus the defers; all in one transaction, so a tenant's
    run is recorded if and only if its jobs are.
    """
    hour = settings.KGC_REMINDER_HOUR
    tenants = Tenant.objects.filter(is_active=True).only("pk", "timezone").order_by("pk")
    due = [
        {"tenant_id": t.pk, "local_date": day.isoformat()}
        for t in tenants
        if (day := morning_day_due(tenant=t, at=at, hour=hour)) is not None
    ]
    with transaction.atomic():
        MorningRun.objects.filter(local_date__lt=at.date() - RUNS_KEPT).delete()
        if not due:
            return []
        with connection.cursor() as cursor:
            cursor.execute(_RUNS_CLAIM_SQL, {"due": json.dumps(due)})
            claimed = cursor.fetchall()
        kwargs = {tenant_id: {"as_of": day.isoformat()} for tenant_id, day in claimed}
        return [
            job_id for task in MORNING_TASKS for job_id in jobs.jobs_fan_out(task_name=task, kwargs_by_tenant=kwargs)
        ]
