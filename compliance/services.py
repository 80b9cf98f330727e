"""Writes of the compliance domain."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from compliance import scoring, selectors
from compliance.conf import scoring_policy
from compliance.models import ScoreLevel, Tenant
from compliance.selectors import tenant_local_date
from kgc.queue import jobs
from notifications.links import app_routes, item_url
from notifications.models import NotificationKind, NotificationUrgency
from notifications.services import DeliveryResult, NotificationDraft, notifications_deliver

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


def compliance_refresh_for_day_fan_out(*, tenants: list[Tenant], as_of: date, triggered_by: str) -> list[int]:
    """Defer one refresh per tenant for the given day (a catch-up or a re-run of a past day).

    No queueing lock: a waiting nightly refresh is for another day and must not absorb this one.
    """
    return jobs.jobs_fan_out(
        task_name=REFRESH_TASK,
        kwargs_by_tenant={t.pk: {"triggered_by": triggered_by, "as_of": as_of.isoformat()} for t in tenants},
    )


# --- The refresh ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RefreshResult:
    tenant_id: int
    as_of: date
    clients_scored: int = 0
    levels: dict[str, int] = field(default_factory=dict)
    clients_dropped: int = 0  # clients whose level got worse than their previous score
    alerts: int = 0  # notifications created by this run (a re-run the same day creates none)
    alerts_skipped: int = 0  # alerts the database refused (logged one by one)

    def summary(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "as_of": self.as_of.isoformat(),
            "clients_scored": self.clients_scored,
            "levels": {level: self.levels.get(level, 0) for level in ScoreLevel.values},
            "clients_dropped": self.clients_dropped,
            "alerts": self.alerts,
            "alerts_skipped": self.alerts_skipped,
        }


def refresh_tenant_compliance(
    *, tenant: Tenant, as_of: date, triggered_by: str, calculated_at: datetime | None = None
) -> RefreshResult:
    """Score every active client of ``tenant`` on ``as_of`` and store one score per client per day.

    A constant number of queries whatever the number of clients: the tenant is loaded in
    four queries, the scores are upserted in bulk on (client, calculated_on), so a second
    run on the same day updates that day's rows instead of adding any. Clients whose
    level is worse than their latest earlier score alert the tenant's admins and
    compliance officers, at most once per client, day and recipient. Scores and alerts
    commit together: a failed run leaves neither.
    """
    policy = scoring_policy()
    calculated_at = calculated_at or timezone.now()
    subjects = selectors.tenant_scoring_subjects(tenant=tenant, as_of=as_of, policy=policy)
    scored = [(subject, scoring.client_score(subject.facts, as_of=as_of, policy=policy)) for subject in subjects]
    dropped = [(s, r) for s, r in scored if scoring.level_dropped(s.previous_level, r.level)]
    owns_transaction = not connection.in_atomic_block
    with transaction.atomic():
        if owns_transaction and not dropped:
            _commit_without_waiting_for_flush()
        _scores_upsert(tenant=tenant, as_of=as_of, scored=scored, triggered_by=triggered_by, at=calculated_at)
        delivered = compliance_alerts_send(tenant=tenant, as_of=as_of, dropped=dropped) if dropped else None
    return RefreshResult(
        tenant_id=tenant.pk,
        as_of=as_of,
        clients_scored=len(scored),
        levels=dict(Counter(str(result.level) for _, result in scored)),
        clients_dropped=len(dropped),
        alerts=delivered.notifications if delivered else 0,
        alerts_skipped=len(delivered.skipped) if delivered else 0,
    )


def _commit_without_waiting_for_flush() -> None:
    """Let this transaction's commit return before its WAL reaches disk (one fsync less per tenant).

    Only for a transaction of scores alone, which this service owns: a database crash in
    that window loses only rows the refresh rewrites on its next run, and in a job the
    worker's synchronous commit of the job's status, which comes after, flushes this WAL
    too, so a job marked succeeded never lost its scores. Alerts commit synchronously
    (their emails must not be sent for a notification that a crash then loses), and a
    caller's transaction keeps its own durability.
    """
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off")


# One statement and one parameter per tenant: the rows travel as a JSON array. (The same
# upsert through bulk_create(update_conflicts=True) compiles and quotes eight parameters
# per client, three times slower.) ON CONFLICT on the (client, calculated_on) unique
# constraint makes a second run on the same day update that day's row.
_UPSERT_SCORES = """
INSERT INTO compliance_compliancescore
       (tenant_id, client_id, score, level, breakdown, calculated_on, calculated_at, triggered_by)
SELECT %(tenant_id)s, r.client_id, r.score, r.level, r.breakdown, %(as_of)s, %(at)s, %(triggered_by)s
  FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(client_id bigint, score smallint, level text, breakdown jsonb)
ON CONFLICT (client_id, calculated_on) DO UPDATE
   SET score = EXCLUDED.score, level = EXCLUDED.level, breakdown = EXCLUDED.breakdown,
       calculated_at = EXCLUDED.calculated_at, triggered_by = EXCLUDED.triggered_by
"""


def _scores_upsert(
    *,
    tenant: Tenant,
    as_of: date,
    scored: list[tuple[selectors.ScoringSubject, scoring.ScoreResult]],
    triggered_by: str,
    at: datetime,
) -> None:
    if not scored:
        return
    rows = [
        {"client_id": s.facts.client_id, "score": r.score, "level": str(r.level), "breakdown": r.breakdown}
        for s, r in scored
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            _UPSERT_SCORES,
            {
                "tenant_id": tenant.pk,
                "as_of": as_of,
                "at": at,
                "triggered_by": triggered_by[:64],
                "rows": json.dumps(rows),
            },
        )


# --- Alerts ---------------------------------------------------------------------------------

ALERT_KIND = NotificationKind.COMPLIANCE_ALERT
ALERT_TEMPLATE = "compliance-alert"
ALERT_URGENCY = {ScoreLevel.RED: NotificationUrgency.HIGH, ScoreLevel.AMBER: NotificationUrgency.NORMAL}


def alert_dedupe_key(*, client_id: int, as_of: date, user_id: int) -> str:
    """At most one alert per client, day and recipient, however many runs that day."""
    return f"compliance_alert:{client_id}:{as_of.isoformat()}:{user_id}"


def alert_data(
    *, tenant: Tenant, as_of: date, subject: selectors.ScoringSubject, result: scoring.ScoreResult
) -> dict[str, Any]:
    """The email's and notification's data, in the seed's shape (camelCase)."""
    return {
        "tenantId": tenant.pk,
        "clientId": subject.facts.client_id,
        "clientName": subject.facts.name,
        "complianceScore": result.score,
        "complianceLevel": str(result.level),
        "previousScore": subject.previous_score,
        "previousLevel": subject.previous_level,
        "asOf": as_of.isoformat(),
        "issues": result.issues,
        "recommendations": result.recommendations,
    }


def compliance_alerts_send(
    *, tenant: Tenant, as_of: date, dropped: list[tuple[selectors.ScoringSubject, scoring.ScoreResult]]
) -> DeliveryResult:
    """Alert the tenant's active admins and compliance officers about each client whose level dropped.

    Two queries for the recipients and the notifications' own constant few, whatever the
    number of clients; a recipient already alerted about a client that day gets nothing new.
    """
    recipients = selectors.tenant_alert_recipients(tenant=tenant)
    routes = app_routes()
    drafts = []
    for subject, result in dropped:
        data = alert_data(tenant=tenant, as_of=as_of, subject=subject, result=result)
        if url := item_url(routes=routes, kind=ALERT_KIND, data=data, tenant_id=tenant.pk):
            data["url"] = url  # the client's page in the web app (KGC_APP_URL)
        level = ScoreLevel(result.level).label.lower()
        title = f"{subject.facts.name}: compliance level dropped to {level} ({result.score}/100)"
        body = "\n".join([title, *(f"- {issue}" for issue in result.issues)])
        for membership in recipients:
            user = membership.user
            drafts.append(
                NotificationDraft(
                    recipient_id=user.pk,
                    recipient_email=user.email,
                    recipient_name=user.get_full_name() or user.get_username(),
                    kind=ALERT_KIND,
                    title=title,  # fitted to its column by notifications_deliver
                    body=body,
                    dedupe_key=alert_dedupe_key(client_id=subject.facts.client_id, as_of=as_of, user_id=user.pk),
                    email_template=ALERT_TEMPLATE,
                    email_subject=f"Compliance alert: {subject.facts.name} is now {level}",
                    data=data,
                    urgency=ALERT_URGENCY.get(result.level),
                )
            )
    return notifications_deliver(tenant=tenant, drafts=drafts)
