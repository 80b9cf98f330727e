"""The daily digest: one email per person and tenant-local day, carrying what waited for it.

A notification for someone who reads digests starts as ``digest_pending``. At the
tenant's digest hour (``KGC_DIGEST_HOUR``, in the tenant's own time zone) an hourly
fan-out defers one ``notifications.send_digests`` job per tenant with something waiting,
at most once per tenant and local day (``DigestRun``); a tick missed because no worker
was up is caught up by the next one the same local day.

The job, for one tenant and day, in one transaction and a constant number of statements:

1. items of people who have since turned that kind off, or whose address is now
   suppressed, leave the queue (``opted_out``, ``suppressed``);
2. one statement inserts a ``Digest`` per active member with items created before the
   cut-off (the digest hour that day) and moves those items to it (``digested``). The
   (tenant, person, day) key is unique: a second worker, or a second run, inserts
   nothing and takes nothing, and a row lock on each item makes sure that an item goes
   to exactly one digest even when two days' runs meet;
3. one statement queues each digest's ``OutboundEmail`` (template ``daily-digest``,
   idempotency key ``digest:<id>``) in the outbox, which sends it at most once like any
   other email.

A person with nothing waiting gets no digest. Items created after the cut-off wait for
the next day's. The composition (subject, grouping, links) is pure: ``digest_compose``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction

from compliance.models import Tenant
from kgc.queue import jobs
from notifications import rules
from notifications.models import (
    Digest,
    DigestRun,
    EmailPriority,
    Notification,
    NotificationEmailStatus,
    NotificationKind,
    NotificationUrgency,
    OutboundEmail,
)
from notifications.services import DIGEST_TASK, DIGEST_TEMPLATE
from notifications.texts import header_text, text_fit

KIND_ORDER = (NotificationKind.DOCUMENT_EXPIRY, NotificationKind.FILING_REMINDER, NotificationKind.COMPLIANCE_ALERT)
HEADINGS: dict[str, str] = {
    NotificationKind.DOCUMENT_EXPIRY: "Documents expiring",
    NotificationKind.FILING_REMINDER: "Filings due",
    NotificationKind.COMPLIANCE_ALERT: "Compliance alerts",
}
COUNT_WORDS: dict[str, tuple[str, str]] = {
    NotificationKind.DOCUMENT_EXPIRY: ("document expiring", "documents expiring"),
    NotificationKind.FILING_REMINDER: ("filing due", "filings due"),
    NotificationKind.COMPLIANCE_ALERT: ("compliance alert", "compliance alerts"),
}
URGENCY_RANK: dict[str, int] = {
    NotificationUrgency.URGENT: 0,
    NotificationUrgency.HIGH: 1,
    NotificationUrgency.NORMAL: 2,
}
# The web app's pages for each kind of item, under KGC_PUBLIC_URL.
ITEM_PATHS: dict[str, str] = {
    NotificationKind.DOCUMENT_EXPIRY: "/clients/{clientId}/documents/{documentId}",
    NotificationKind.FILING_REMINDER: "/clients/{clientId}/filings/{filingId}",
    NotificationKind.COMPLIANCE_ALERT: "/clients/{clientId}",
}
_SUBJECT_MAX = OutboundEmail._meta.get_field("subject").max_length or 300
_NAME_MAX = OutboundEmail._meta.get_field("to_name").max_length or 200


# --- When ----------------------------------------------------------------------------------------


def digest_cutoff(*, tenant: Tenant, day: date, hour: int) -> datetime:
    """The digest hour on the tenant-local ``day``: items created before it are in that day's digest."""
    return datetime.combine(day, time(hour), tzinfo=tenant.zone)


def digest_day_due(*, tenant: Tenant, at: datetime, hour: int) -> date | None:
    """The tenant-local day whose digest is due at ``at`` (its digest hour has come), or None."""
    local = at.astimezone(tenant.zone)
    return local.date() if local.hour >= hour else None


# --- What: pure composition -----------------------------------------------------------------------


@dataclass(frozen=True)
class DigestItem:
    notification_id: int
    kind: str
    urgency: str | None
    title: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ComposedDigest:
    subject: str
    context: dict[str, Any]


def digest_subject(*, counts: dict[str, int], tenant_name: str) -> str:
    """What the digest holds, counted: "3 documents expiring, 2 filings due: Firm name"."""
    parts = []
    for kind in KIND_ORDER:
        if count := counts.get(kind, 0):
            singular, plural = COUNT_WORDS[kind]
            parts.append(f"{count} {singular if count == 1 else plural}")
    return text_fit(header_text(f"{', '.join(parts)}: {tenant_name}"), _SUBJECT_MAX)


def _days(value: Any, as_of: date) -> int | None:
    try:
        return (date.fromisoformat(value) - as_of).days
    except (TypeError, ValueError):
        return None


def _detail(item: DigestItem, as_of: date) -> str:
    data = item.data
    if item.kind == NotificationKind.DOCUMENT_EXPIRY:
        days = _days(data.get("expiresOn"), as_of)
        when = f", {rules.when(days)}" if days is not None and days >= 0 else ""
        return f"{data.get('documentType', '')} expires on {_long(data.get('expiresOn'))}{when}".strip()
    if item.kind == NotificationKind.FILING_REMINDER:
        days = _days(data.get("dueDate"), as_of)
        when = f", {rules.when(days)}" if days is not None and days >= 0 else ""
        return f"{data.get('filingType', '')} {data.get('period', '')} due on {_long(data.get('dueDate'))}{when}"
    return f"Score {data.get('complianceScore', '?')}/100, {data.get('complianceLevel', '')}".rstrip(", ")


def _long(value: Any) -> str:
    try:
        return rules.long_date(date.fromisoformat(value))
    except (TypeError, ValueError):
        return str(value or "")


def item_url(*, public_url: str, kind: str, data: dict[str, Any]) -> str:
    """The item's page in the web app, or "" without a public URL or the ids it needs."""
    if not public_url or kind not in ITEM_PATHS:
        return ""
    try:
        ids = {key: int(data[key]) for key in ("clientId", "documentId", "filingId") if key in data}
        return public_url.rstrip("/") + ITEM_PATHS[kind].format(**ids)
    except (KeyError, TypeError, ValueError):
        return ""


def _order(item: DigestItem, as_of: date) -> tuple[int, int, str]:
    days = _days(item.data.get("expiresOn") or item.data.get("dueDate"), as_of)
    return URGENCY_RANK.get(item.urgency or "", 3), days if days is not None else 10_000, item.title


def digest_compose(*, items: list[DigestItem], tenant_name: str, as_of: date, public_url: str) -> ComposedDigest:
    """The digest email's subject and template data (pure).

    Items are grouped by kind (documents, filings, alerts), then by client; clients are
    ordered by their most urgent item, items by urgency then by days left. Each item
    links to its page when there is a public URL.
    """
    counts: dict[str, int] = defaultdict(int)
    groups = []
    for kind in KIND_ORDER:
        of_kind = sorted((i for i in items if i.kind == kind), key=lambda i: _order(i, as_of))
        if not of_kind:
            continue
        counts[kind] = len(of_kind)
        clients: dict[Any, dict[str, Any]] = {}
        for item in of_kind:  # already most urgent first, so clients come in that order too
            key = (item.data.get("clientId"), item.data.get("clientName"))
            client = clients.setdefault(key, {"clientName": str(item.data.get("clientName") or "Other"), "items": []})
            client["items"].append(
                {
                    "title": item.title,
                    "urgency": (item.urgency or "").lower(),
                    "urgencyLabel": NotificationUrgency(item.urgency).label if item.urgency else "",
                    "detail": _detail(item, as_of),
                    "url": item_url(public_url=public_url, kind=kind, data=item.data),
                }
            )
        groups.append({"heading": HEADINGS[kind], "count": len(of_kind), "clients": list(clients.values())})
    return ComposedDigest(
        subject=digest_subject(counts=counts, tenant_name=tenant_name),
        context={"tenantName": tenant_name, "asOf": as_of.isoformat(), "total": len(items), "groups": groups},
    )


# --- The hourly fan-out ---------------------------------------------------------------------------

# At most one run per tenant and local day: only the tenants inserted here get a job.
_RUNS_CLAIM_SQL = """
INSERT INTO notifications_digestrun (tenant_id, local_date, created_at)
SELECT tenant_id, local_date, now()
  FROM jsonb_to_recordset(%(due)s::jsonb) AS due(tenant_id bigint, local_date date)
ON CONFLICT (tenant_id, local_date) DO NOTHING
RETURNING tenant_id, local_date
"""
RUNS_KEPT = timedelta(days=7)


def digests_fan_out(*, at: datetime) -> list[int]:
    """Defer one digest job per active tenant whose digest hour has come at ``at`` on its local
    day and that has something waiting; at most once per tenant and local day. Return the job ids.

    A constant number of queries (plus one defer per tenant deferred). Every tick after
    the digest hour looks again, so a missed tick is caught up the same local day.
    """
    hour = settings.KGC_DIGEST_HOUR
    waiting = set(
        Notification.objects.filter(email_status=NotificationEmailStatus.DIGEST_PENDING)
        .order_by()
        .values_list("tenant_id", flat=True)
        .distinct()
    )
    tenants = Tenant.objects.filter(is_active=True, pk__in=waiting).only("pk", "timezone").order_by("pk")
    due = [
        {"tenant_id": t.pk, "local_date": day.isoformat()}
        for t in tenants
        if (day := digest_day_due(tenant=t, at=at, hour=hour)) is not None
    ]
    with transaction.atomic():
        DigestRun.objects.filter(local_date__lt=at.date() - RUNS_KEPT).delete()
        if not due:
            return []
        with connection.cursor() as cursor:
            cursor.execute(_RUNS_CLAIM_SQL, {"due": json.dumps(due)})
            claimed = cursor.fetchall()
        return jobs.jobs_fan_out(
            task_name=DIGEST_TASK,
            kwargs_by_tenant={tenant_id: {"as_of": day.isoformat()} for tenant_id, day in claimed},
        )


# --- One tenant's digests -------------------------------------------------------------------------


@dataclass(frozen=True)
class DigestSent:
    recipient_id: int
    email: str
    name: str
    items: int
    subject: str


@dataclass(frozen=True)
class DigestResult:
    tenant_id: int
    as_of: date
    digests: list[DigestSent] = field(default_factory=list)
    opted_out: int = 0  # waiting items whose kind their person has since turned off
    suppressed: int = 0  # waiting items whose address has since been suppressed

    @property
    def items(self) -> int:
        return sum(digest.items for digest in self.digests)

    def summary(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "as_of": self.as_of.isoformat(),
            "digests": len(self.digests),
            "items": self.items,
            "opted_out": self.opted_out,
            "suppressed": self.suppressed,
        }


def _user_table() -> str:
    return get_user_model()._meta.db_table


# Items still waiting whose person has since turned the kind off, or whose address is now
# suppressed: they leave the queue instead of going out in a digest.
_SWEEP_SQL = """
WITH off AS (
    SELECT user_id, kind FROM notifications_notificationpreference
     WHERE tenant_id = %(tenant_id)s AND email = 'off'
), suppressed AS (
    SELECT u.id AS user_id
      FROM {users} AS u
      JOIN notifications_suppression AS s ON s.email = lower(u.email)
     WHERE s.tenant_id = %(tenant_id)s OR s.tenant_id IS NULL
), swept AS (
    UPDATE notifications_notification AS n
       SET email_status = CASE WHEN (n.recipient_id, n.kind) IN (SELECT user_id, kind FROM off)
                               THEN 'opted_out' ELSE 'suppressed' END
     WHERE n.tenant_id = %(tenant_id)s AND n.email_status = 'digest_pending'
       AND ((n.recipient_id, n.kind) IN (SELECT user_id, kind FROM off)
            OR n.recipient_id IN (SELECT user_id FROM suppressed))
    RETURNING n.email_status
)
SELECT count(*) FILTER (WHERE email_status = 'opted_out'), count(*) FILTER (WHERE email_status = 'suppressed')
  FROM swept
"""

# One digest per active member with items waiting from before the cut-off, and those items
# moved to it, in one statement. ON CONFLICT on the (tenant, recipient, day) key: a second
# worker waits for the first's row, then inserts nothing and so takes no item. The UPDATE
# locks each item and checks it is still waiting, so an item taken by another digest
# meanwhile (another day's run) is left to it; a digest left with no item is deleted.
_CLAIM_SQL = """
WITH pending AS (
    SELECT n.recipient_id
      FROM notifications_notification AS n
      JOIN {users} AS u ON u.id = n.recipient_id AND u.is_active AND u.email <> ''
     WHERE n.tenant_id = %(tenant_id)s AND n.email_status = 'digest_pending' AND n.created_at < %(cutoff)s
       AND EXISTS (SELECT 1 FROM compliance_membership AS m
                    WHERE m.tenant_id = n.tenant_id AND m.user_id = n.recipient_id)
     GROUP BY n.recipient_id
), new_digests AS (
    INSERT INTO notifications_digest (tenant_id, recipient_id, local_date, cutoff, items_count, created_at)
    SELECT %(tenant_id)s, recipient_id, %(day)s, %(cutoff)s, 0, now() FROM pending
    ON CONFLICT (tenant_id, recipient_id, local_date) DO NOTHING
    RETURNING id, recipient_id
), items AS (
    UPDATE notifications_notification AS n
       SET email_status = 'digested', digest_id = d.id
      FROM new_digests AS d
     WHERE n.tenant_id = %(tenant_id)s AND n.recipient_id = d.recipient_id
       AND n.email_status = 'digest_pending' AND n.created_at < %(cutoff)s
    RETURNING n.id, n.digest_id, n.kind, n.urgency, n.title, n.data
)
SELECT d.id, d.recipient_id, u.email, u.first_name, u.last_name, u.username,
       i.id, i.kind, i.urgency, i.title, i.data
  FROM new_digests AS d
  JOIN {users} AS u ON u.id = d.recipient_id
  LEFT JOIN items AS i ON i.digest_id = d.id
 ORDER BY d.id, i.id
"""

# Each digest's email, in the outbox's line (normal priority, the tenant's next places), in
# one statement (as notifications_deliver does).
_QUEUE_SQL = """
WITH rows AS (
    SELECT r.*, row_number() OVER (ORDER BY r.digest_id) - 1 AS nth
      FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(
           digest_id bigint, items_count integer, to_email text, to_name text, subject text, context jsonb)
), places AS (
    SELECT notifications_email_places(%(tenant_id)s, %(priority)s::smallint, count(*)::int) AS first FROM rows
), new_emails AS (
    INSERT INTO notifications_outboundemail
           (tenant_id, notification_id, to_email, to_name, subject, template, context, status, attempts,
            last_error, message_id, idempotency_key, created_at, priority, fair_key)
    SELECT %(tenant_id)s, NULL, to_email, to_name, subject, %(template)s, context, 'queued', 0, '', '',
           'digest:' || digest_id, now(), %(priority)s, places.first + rows.nth
      FROM rows CROSS JOIN places
    RETURNING id, idempotency_key
), linked AS (
    UPDATE notifications_digest AS d SET outbound_email_id = e.id, items_count = r.items_count
      FROM rows AS r JOIN new_emails AS e ON e.idempotency_key = 'digest:' || r.digest_id
     WHERE d.id = r.digest_id AND d.tenant_id = %(tenant_id)s
    RETURNING d.id
)
SELECT (SELECT count(*) FROM new_emails), (SELECT count(*) FROM linked)
"""


@dataclass
class _Claimed:
    recipient_id: int
    email: str
    name: str
    items: list[DigestItem] = field(default_factory=list)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value  # a raw cursor leaves jsonb as text


def _claim(tenant: Tenant, day: date, cutoff: datetime) -> tuple[dict[int, _Claimed], list[int]]:
    claimed: dict[int, _Claimed] = {}
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL.format(users=_user_table()), {"tenant_id": tenant.pk, "day": day, "cutoff": cutoff})
        for digest_id, user_id, email, first, last, username, item_id, kind, urgency, title, data in cursor:
            digest = claimed.setdefault(
                digest_id, _Claimed(recipient_id=user_id, email=email, name=f"{first} {last}".strip() or username)
            )
            if item_id is not None:
                digest.items.append(DigestItem(item_id, kind, urgency, title, _json(data) or {}))
    empty = [digest_id for digest_id, digest in claimed.items() if not digest.items]
    return {k: v for k, v in claimed.items() if v.items}, empty


def _queue(tenant: Tenant, rows: list[dict[str, Any]]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            _QUEUE_SQL,
            {
                "tenant_id": tenant.pk,
                "rows": json.dumps(rows),
                "template": DIGEST_TEMPLATE,
                "priority": EmailPriority.NORMAL,
            },
        )
        emails, linked = cursor.fetchone()
    if not emails == linked == len(rows):  # one statement, all or nothing: a bug if not
        raise RuntimeError(f"{len(rows)} digests but {emails} emails, {linked} linked")


def digests_send(*, tenant: Tenant, as_of: date) -> DigestResult:
    """Queue the daily digest of the tenant-local day ``as_of`` for each member with items waiting.

    Each active member with an address and ``digest_pending`` items created before that
    day's digest hour gets one digest email, at most one per day, and each item ends in
    exactly one digest. Items whose kind the person has since turned off, or whose address
    is now suppressed, are taken out of the queue instead. Safe to run again or
    concurrently: a second run sends nothing more. An inactive tenant gets nothing.
    """
    if not tenant.is_active:
        return DigestResult(tenant_id=tenant.pk, as_of=as_of)
    cutoff = digest_cutoff(tenant=tenant, day=as_of, hour=settings.KGC_DIGEST_HOUR)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_SWEEP_SQL.format(users=_user_table()), {"tenant_id": tenant.pk})
            opted_out, suppressed = cursor.fetchone()
        claimed, empty = _claim(tenant, as_of, cutoff)
        if empty:
            Digest.objects.filter(pk__in=empty, tenant=tenant).delete()
        sent, rows = [], []
        for digest_id, digest in claimed.items():
            composed = digest_compose(
                items=digest.items, tenant_name=tenant.name, as_of=as_of, public_url=settings.KGC_PUBLIC_URL
            )
            name = text_fit(header_text(digest.name), _NAME_MAX)
            rows.append(
                {
                    "digest_id": digest_id,
                    "items_count": len(digest.items),
                    "to_email": digest.email,
                    "to_name": name,
                    "subject": composed.subject,
                    "context": composed.context,
                }
            )
            sent.append(DigestSent(digest.recipient_id, digest.email, name, len(digest.items), composed.subject))
        if rows:
            _queue(tenant, rows)
    return DigestResult(tenant_id=tenant.pk, as_of=as_of, digests=sent, opted_out=opted_out, suppressed=suppressed)


def digests_plan(*, tenant: Tenant, as_of: date) -> list[DigestSent]:
    """What ``digests_send`` would queue now, without writing anything (``--dry-run``)."""
    with transaction.atomic():
        result = digests_send(tenant=tenant, as_of=as_of)
        transaction.set_rollback(True)
    return result.digests
