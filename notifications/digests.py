"""The daily digest: one email per person and tenant-local day, carrying what waited for it.

A notification for someone who reads digests starts as ``digest_pending``. At the
tenant's digest hour (``KGC_DIGEST_HOUR``, in the tenant's own time zone, after its
``KGC_REMINDER_HOUR`` morning checks) an hourly fan-out defers one
``notifications.send_digests`` job per tenant with something waiting for an active
member, at most once per tenant and local day (``DigestRun``); a tick missed because no
worker was up is caught up by the next one the same local day, and a tenant whose
morning checks are still queued or running waits for the next tick, so that a caught-up
morning's items still go out that day.

The job, for one tenant and day, in one transaction and a constant number of statements:

1. items that waited longer than ``KGC_DIGEST_MAX_WAIT_DAYS`` expire (``expired``);
   items of people who have since turned that kind off, or whose address is now
   suppressed, leave the queue (``opted_out``, ``suppressed``); items whose document was
   renewed, or whose filing was filed, since they were made are left out (``resolved``),
   and the digest says how many;
2. one statement inserts a ``Digest`` per active member with items for that day (made
   for it or before it, or created before its cut-off, the digest hour) and moves those
   items to it (``digested``). The (tenant, person, day) key is unique: a second
   worker, or a second run, inserts nothing and takes nothing, and a row lock on each
   item makes sure that an item goes to exactly one digest even when two days' runs meet;
3. one statement queues each digest's ``OutboundEmail`` (template ``daily-digest``,
   idempotency key ``digest:<id>``) in the outbox, which sends it at most once like any
   other email. If that email finally fails or is suppressed, its items say so
   (``failed``, ``suppressed``: a trigger on the email row, migration 0005).

A person with nothing waiting gets no digest. Each item is written when the digest is
composed, from its data, for the digest's own date: nothing frozen when it was made can
contradict the date line. The composition is pure: ``digest_compose``.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Q

from compliance.calendars import long_day
from compliance.models import FilingStatus, Tenant
from kgc.queue import jobs, tracing
from notifications import rules
from notifications.links import AppRoutes, app_routes, item_url
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
from notifications.mornings import MORNING_TASKS
from notifications.services import DIGEST_TASK, DIGEST_TEMPLATE
from notifications.texts import header_text, text_fit

KIND_ORDER = (
    NotificationKind.FILING_ESCALATION,
    NotificationKind.DOCUMENT_EXPIRY,
    NotificationKind.FILING_REMINDER,
    NotificationKind.COMPLIANCE_ALERT,
)
HEADINGS: dict[str, str] = {
    NotificationKind.FILING_ESCALATION: "Filings overdue",
    NotificationKind.DOCUMENT_EXPIRY: "Documents expiring",
    NotificationKind.FILING_REMINDER: "Filings due",
    NotificationKind.COMPLIANCE_ALERT: "Compliance alerts",
}
COUNT_WORDS: dict[str, tuple[str, str]] = {
    NotificationKind.FILING_ESCALATION: ("filing overdue", "filings overdue"),
    NotificationKind.DOCUMENT_EXPIRY: ("document expiring", "documents expiring"),
    NotificationKind.FILING_REMINDER: ("filing due", "filings due"),
    NotificationKind.COMPLIANCE_ALERT: ("compliance alert", "compliance alerts"),
}

URGENCY_RANK: dict[str, int] = {
    NotificationUrgency.URGENT: 0,
    NotificationUrgency.HIGH: 1,
    NotificationUrgency.NORMAL: 2,
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


def _long(value: Any) -> str:
    try:
        return long_day(date.fromisoformat(value))
    except (TypeError, ValueError):
        return str(value or "")


def _ago(days: int) -> str:
    return "yesterday" if days == 1 else f"{days} days ago"


@dataclass(frozen=True)
class ItemText:
    title: str
    detail: str
    urgency: str | None


def item_text(item: DigestItem, as_of: date) -> ItemText:
    """An item's line and detail, written from its data for the digest's date ``as_of`` (pure).

    Days are counted from ``as_of``, so a document expiring in 8 days says so in a digest
    of a day after the item was made, and urgencies follow the same count. An item whose
    data lacks what that needs keeps its own title.
    """
    data = item.data
    client, kind = str(data.get("clientName", "")), item.kind
    if kind == NotificationKind.DOCUMENT_EXPIRY and (days := _days(data.get("expiresOn"), as_of)) is not None:
        doc_type = str(data.get("documentType", ""))
        title = (
            rules.expiry_title(document_type=doc_type, client_name=client, days=days)
            if days >= 0
            else f"{doc_type} for {client} expired {_ago(-days)}"
        )
        detail = f"{doc_type} expires on {_long(data.get('expiresOn'))}"
        return ItemText(title, detail, rules.expiry_urgency(days) if days >= 0 else NotificationUrgency.URGENT)
    due_text = _long(data.get("dueDate")) + (f" ({data['dueNote']})" if data.get("dueNote") else "")
    filing_type, period = str(data.get("filingType", "")), str(data.get("period", ""))
    if kind == NotificationKind.FILING_REMINDER and (days := _days(data.get("dueDate"), as_of)) is not None:
        if days < 0:
            title = f"{filing_type} {period} for {client} was due {_ago(-days)}"
            return ItemText(title, f"Was due {due_text}", NotificationUrgency.URGENT)
        urgency = rules.filing_urgency(days)
        title = rules.filing_title(
            filing_type=filing_type, period=period, client_name=client, days=days, urgency=urgency
        )
        return ItemText(title, f"Due {due_text}", urgency)
    if kind == NotificationKind.FILING_ESCALATION and (days := _days(data.get("dueDate"), as_of)) is not None:
        title = rules.overdue_title(
            filing_type=filing_type, period=period, client_name=client, days_overdue=max(-days, 1)
        )
        assigned = ", ".join(map(str, data.get("assignees") or [])) or "nobody"
        return ItemText(title, f"Was due {due_text}; assigned to {assigned}", NotificationUrgency.URGENT)
    if kind == NotificationKind.COMPLIANCE_ALERT:
        detail = f"Score {data.get('complianceScore', '?')}/100, {data.get('complianceLevel', '')}".rstrip(", ")
        return ItemText(item.title, detail, item.urgency)
    return ItemText(item.title, "", item.urgency)


def _order(item: DigestItem, text: ItemText, as_of: date) -> tuple[int, int, str]:
    days = _days(item.data.get("expiresOn") or item.data.get("dueDate"), as_of)
    return URGENCY_RANK.get(text.urgency or "", 3), days if days is not None else 10_000, text.title


def digest_date_line(as_of: date) -> str:
    """``Thursday 3 June 2027``: the day the digest is for, in its firm's time zone."""
    return long_day(as_of)


def digest_compose(
    *,
    items: list[DigestItem],
    tenant_name: str,
    as_of: date,
    routes: AppRoutes,
    tenant_id: int | None = None,
    resolved: int = 0,
) -> ComposedDigest:
    """The digest email's subject and template data (pure).

    Items are grouped by kind (filings overdue, documents, filings due, alerts), then by
    client; clients are ordered by their most urgent item, items by urgency then by days
    left. Each item is written for ``as_of`` (``item_text``) and links to its page in the
    web app when there is an app URL (``routes``). ``resolved`` items were left out
    because they were resolved since they were made; the digest says how many.
    """
    counts: dict[str, int] = defaultdict(int)
    groups = []
    texts = {item.notification_id: item_text(item, as_of) for item in items}
    for kind in KIND_ORDER:
        of_kind = sorted((i for i in items if i.kind == kind), key=lambda i: _order(i, texts[i.notification_id], as_of))
        if not of_kind:
            continue
        counts[kind] = len(of_kind)
        clients: dict[Any, dict[str, Any]] = {}
        for item in of_kind:  # already most urgent first, so clients come in that order too
            text = texts[item.notification_id]
            key = (item.data.get("clientId"), item.data.get("clientName"))
            client = clients.setdefault(key, {"clientName": str(item.data.get("clientName") or "Other"), "items": []})
            client["items"].append(
                {
                    "title": text.title,
                    "urgency": (text.urgency or "").lower(),
                    "urgencyLabel": NotificationUrgency(text.urgency).label if text.urgency else "",
                    "detail": text.detail,
                    "url": item_url(routes=routes, kind=kind, data=item.data, tenant_id=tenant_id),
                }
            )
        groups.append({"heading": HEADINGS[kind], "count": len(of_kind), "clients": list(clients.values())})
    return ComposedDigest(
        subject=digest_subject(counts=counts, tenant_name=tenant_name),
        context={
            "tenantName": tenant_name,
            "asOf": as_of.isoformat(),
            "dateLine": digest_date_line(as_of),
            "total": len(items),
            "groups": groups,
            "resolved": resolved,
        },
    )


# --- Items resolved since they were made: pure ---------------------------------------------------


@dataclass(frozen=True)
class DocumentFacts:
    """What a document item is checked against: the document's expiry date now, and whether a
    document of the same client and type outlasts it (a renewal)."""

    expires_on: date | None
    renewed: bool


@dataclass(frozen=True)
class FilingFacts:
    status: str
    due_date: date


FILED = (FilingStatus.SUBMITTED, FilingStatus.ACCEPTED)


def item_resolution(
    *, kind: str, data: dict[str, Any], documents: dict[int, DocumentFacts], filings: dict[int, FilingFacts]
) -> str | None:
    """Why a waiting item no longer needs telling (``renewed``, ``filed``, ``date changed``), or None.

    An item whose document or filing is gone is kept: it is still shown from its own data.
    """
    try:
        if kind == NotificationKind.DOCUMENT_EXPIRY:
            document = documents.get(int(data["documentId"]))
            if document is None:
                return None
            if document.renewed:
                return "renewed"
            return None if document.expires_on == date.fromisoformat(data["expiresOn"]) else "date changed"
        if kind in (NotificationKind.FILING_REMINDER, NotificationKind.FILING_ESCALATION):
            filing = filings.get(int(data["filingId"]))
            if filing is None:
                return None
            if filing.status in FILED:
                return "filed"
            statutory = date.fromisoformat(data.get("statutoryDueDate") or data["dueDate"])
            return None if filing.due_date == statutory else "date changed"
    except (KeyError, TypeError, ValueError):
        return None
    return None


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

# Tenants with an item a digest could carry: waiting, for an active member with an address.
# Items of a deactivated or removed member never make a digest job (they expire instead).
_WAITING_SQL = """
SELECT DISTINCT n.tenant_id
  FROM notifications_notification AS n
  JOIN {users} AS u ON u.id = n.recipient_id AND u.is_active AND u.email <> ''
 WHERE n.email_status = 'digest_pending'
   AND EXISTS (SELECT 1 FROM compliance_membership AS m WHERE m.tenant_id = n.tenant_id AND m.user_id = n.recipient_id)
"""

# Tenants whose morning checks are queued or running (read through the jobs table's partial
# index on todo and doing jobs): their digest waits for the next tick.
_MORNING_PENDING_SQL = """
SELECT DISTINCT (args->>'tenant_id')::bigint
  FROM procrastinate_jobs
 WHERE status IN ('todo', 'doing') AND task_name = ANY(%(tasks)s)
"""

_EXPIRE_SQL = """
UPDATE notifications_notification SET email_status = 'expired'
 WHERE email_status = 'digest_pending' AND created_at < %(oldest)s {tenant}
"""


def digest_items_expire(*, before: datetime, tenant: Tenant | None = None) -> int:
    """Give every item still waiting for a digest since before ``before`` the final status
    ``expired`` (one tenant's, or every tenant's); return how many.

    Such an item belongs to a member deactivated or removed, or to a tenant switched off, or
    digests were not sent for days: sent now, it would be stale, and a member reactivated
    months later would get months of them at once.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            _EXPIRE_SQL.format(tenant="AND tenant_id = %(tenant_id)s" if tenant else ""),
            {"oldest": before, "tenant_id": tenant.pk if tenant else None},
        )
        return cursor.rowcount


def digests_fan_out(*, at: datetime) -> list[int]:
    """Defer one digest job per active tenant whose digest hour has come at ``at`` on its local
    day and that has something waiting for an active member; at most once per tenant and
    local day. Return the job ids.

    A constant number of queries (plus one defer per tenant deferred). Every tick after
    the digest hour looks again, so a missed tick is caught up the same local day; a tenant
    whose morning checks are still queued or running is left to the next tick. Items
    waiting longer than ``KGC_DIGEST_MAX_WAIT_DAYS`` expire first.
    """
    hour = settings.KGC_DIGEST_HOUR
    with transaction.atomic():
        digest_items_expire(before=at - timedelta(days=settings.KGC_DIGEST_MAX_WAIT_DAYS))
        with connection.cursor() as cursor:
            cursor.execute(_WAITING_SQL.format(users=_user_table()))
            waiting = {tenant_id for (tenant_id,) in cursor.fetchall()}
            cursor.execute(_MORNING_PENDING_SQL, {"tasks": list(MORNING_TASKS)})
            waiting -= {tenant_id for (tenant_id,) in cursor.fetchall()}
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
    resolved: int = 0  # waiting items left out: document renewed, filing filed since made
    expired: int = 0  # waiting items that waited longer than KGC_DIGEST_MAX_WAIT_DAYS
    waiting_later: int = 0  # items still waiting after the run: for a later day (made after the digest hour)
    waiting_held: int = 0  # items still waiting for the day: their person gets no digest (inactive, no address)

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
            "resolved": self.resolved,
            "expired": self.expired,
            "waiting_later": self.waiting_later,
            "waiting_held": self.waiting_held,
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

# An item is for a day's digest when it was made for that day or before it (its data's
# ``asOf``, the tenant-local day of the morning run that made it: a caught-up morning's items
# still go out that day) or was created before the day's cut-off (items with no ``asOf``).
FOR_THE_DAY = "(n.created_at < %(cutoff)s OR n.data->>'asOf' <= %(day_text)s)"

# One digest per active member with items waiting for the day, and those items moved to
# it, in one statement. ON CONFLICT on the (tenant, recipient, day) key: a second
# worker waits for the first's row, then inserts nothing and so takes no item. The UPDATE
# locks each item and checks it is still waiting, so an item taken by another digest
# meanwhile (another day's run) is left to it; a digest left with no item is deleted.
_CLAIM_SQL = """
WITH pending AS (
    SELECT n.recipient_id
      FROM notifications_notification AS n
      JOIN {users} AS u ON u.id = n.recipient_id AND u.is_active AND u.email <> ''
     WHERE n.tenant_id = %(tenant_id)s AND n.email_status = 'digest_pending' AND {for_the_day}
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
       AND n.email_status = 'digest_pending' AND {for_the_day}
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
            last_error, message_id, idempotency_key, created_at, priority, fair_key, trace_context)
    SELECT %(tenant_id)s, NULL, to_email, to_name, subject, %(template)s, context, 'queued', 0, '', '',
           'digest:' || digest_id, now(), %(priority)s, places.first + rows.nth, %(trace_context)s::jsonb
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


# The items still waiting after a run: those for a later day's digest (made after this day's
# cut-off and for no earlier day), and those for this day whose person gets no digest.
_STILL_WAITING_SQL = """
SELECT count(*) - count(*) FILTER (WHERE {for_the_day}), count(*) FILTER (WHERE {for_the_day})
  FROM notifications_notification AS n
 WHERE n.tenant_id = %(tenant_id)s AND n.email_status = 'digest_pending'
"""


def _waiting(tenant: Tenant, day: date, cutoff: datetime) -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            _STILL_WAITING_SQL.format(for_the_day=FOR_THE_DAY),
            {"tenant_id": tenant.pk, "day_text": day.isoformat(), "cutoff": cutoff},
        )
        later, held = cursor.fetchone()
    return int(later), int(held)


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
        cursor.execute(
            _CLAIM_SQL.format(users=_user_table(), for_the_day=FOR_THE_DAY),
            {"tenant_id": tenant.pk, "day": day, "day_text": day.isoformat(), "cutoff": cutoff},
        )
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
                "trace_context": tracing.context_json(),
            },
        )
        emails, linked = cursor.fetchone()
    if not emails == linked == len(rows):  # one statement, all or nothing: a bug if not
        raise RuntimeError(f"{len(rows)} digests but {emails} emails, {linked} linked")


def _resolve(tenant: Tenant, day: date, cutoff: datetime) -> Counter[int]:
    """Leave out the day's waiting items resolved since they were made (``resolved``, with the
    reason in their data); return how many per person.

    Three queries whatever the number of items (one more to write): the items, their
    documents with the others of the same client and type (to see a renewal), their filings.
    """
    kinds = [NotificationKind.DOCUMENT_EXPIRY, NotificationKind.FILING_REMINDER, NotificationKind.FILING_ESCALATION]
    pending = list(
        Notification.objects.filter(tenant=tenant, email_status=NotificationEmailStatus.DIGEST_PENDING, kind__in=kinds)
        .filter(Q(created_at__lt=cutoff) | Q(data__asOf__lte=day.isoformat()))
        .values_list("pk", "recipient_id", "kind", "data")
    )
    document_ids = {i for _, _, _, data in pending if (i := _id(data, "documentId")) is not None}
    filing_ids = {i for _, _, _, data in pending if (i := _id(data, "filingId")) is not None}
    documents = _document_facts(tenant, document_ids)
    filings = {}
    if filing_ids:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, status, due_date FROM compliance_filing WHERE tenant_id = %s AND id = ANY(%s::bigint[])",
                [tenant.pk, sorted(filing_ids)],
            )
            filings = {pk: FilingFacts(status, due) for pk, status, due in cursor.fetchall()}
    resolved = [
        (pk, recipient_id, reason)
        for pk, recipient_id, kind, data in pending
        if (reason := item_resolution(kind=kind, data=data, documents=documents, filings=filings)) is not None
    ]
    if resolved:
        with connection.cursor() as cursor:
            cursor.execute(
                _RESOLVE_SQL,
                {"rows": json.dumps([{"id": pk, "reason": why} for pk, _, why in resolved]), "tenant_id": tenant.pk},
            )
    return Counter(recipient_id for _, recipient_id, _ in resolved)


_RESOLVE_SQL = """
UPDATE notifications_notification AS n
   SET email_status = 'resolved', data = n.data || jsonb_build_object('resolvedBecause', r.reason)
  FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(id bigint, reason text)
 WHERE n.id = r.id AND n.tenant_id = %(tenant_id)s AND n.email_status = 'digest_pending'
"""


def _id(data: Any, key: str) -> int | None:
    try:
        return int(data[key])
    except (KeyError, TypeError, ValueError):
        return None


_DOCUMENT_FACTS_SQL = """
SELECT document.id, document.client_id, document.document_type_id, document.expires_on
  FROM compliance_document AS document
 WHERE document.tenant_id = %(tenant_id)s
   AND (document.client_id, document.document_type_id) IN (
        SELECT item.client_id, item.document_type_id
          FROM compliance_document AS item
         WHERE item.tenant_id = %(tenant_id)s AND item.id = ANY(%(ids)s::bigint[]))
"""


def _document_facts(tenant: Tenant, ids: set[int]) -> dict[int, DocumentFacts]:
    """Each document's expiry date, and whether another of its client and type outlasts it (the
    rule of ``selectors.documents_expiring``: no date beats any date, a later date an earlier
    one, equal dates the higher id)."""
    if not ids:
        return {}
    # The documents of each item's (client, type) pair, the ids as one array parameter: the
    # ORM's two IN subqueries made a semi join that read the tenant's documents once per row.
    with connection.cursor() as cursor:
        cursor.execute(_DOCUMENT_FACTS_SQL, {"tenant_id": tenant.pk, "ids": sorted(ids)})
        rows = cursor.fetchall()
    longest: dict[tuple[int, int], tuple[int, date, int]] = {}
    for pk, client_id, type_id, expires_on in rows:
        rank = (1, date.max, pk) if expires_on is None else (0, expires_on, pk)
        longest[(client_id, type_id)] = max(longest.get((client_id, type_id), rank), rank)
    return {
        pk: DocumentFacts(expires_on=expires_on, renewed=longest[(client_id, type_id)][2] != pk)
        for pk, client_id, type_id, expires_on in rows
        if pk in ids
    }


def digests_send(*, tenant: Tenant, as_of: date) -> DigestResult:
    """Queue the daily digest of the tenant-local day ``as_of`` for each member with items waiting.

    Each active member with an address and ``digest_pending`` items for that day (made for
    it or before, or created before that day's digest hour) gets one digest email, at most
    one per day, and each item ends in exactly one digest. Items are taken out of the queue
    instead when they waited longer than ``KGC_DIGEST_MAX_WAIT_DAYS`` (``expired``), their
    kind is now off or their address suppressed, or they were resolved since they were made
    (``resolved``: the digest says how many). Safe to run again or concurrently: a second
    run sends nothing more. An inactive tenant gets nothing.
    """
    if not tenant.is_active:
        return DigestResult(tenant_id=tenant.pk, as_of=as_of)
    cutoff = digest_cutoff(tenant=tenant, day=as_of, hour=settings.KGC_DIGEST_HOUR)
    routes = app_routes()
    with transaction.atomic():
        expired = digest_items_expire(before=cutoff - timedelta(days=settings.KGC_DIGEST_MAX_WAIT_DAYS), tenant=tenant)
        with connection.cursor() as cursor:
            cursor.execute(_SWEEP_SQL.format(users=_user_table()), {"tenant_id": tenant.pk})
            opted_out, suppressed = cursor.fetchone()
        resolved = _resolve(tenant, as_of, cutoff)
        claimed, empty = _claim(tenant, as_of, cutoff)
        if empty:
            Digest.objects.filter(pk__in=empty, tenant=tenant).delete()
        sent, rows = [], []
        for digest_id, digest in claimed.items():
            composed = digest_compose(
                items=digest.items,
                tenant_name=tenant.name,
                as_of=as_of,
                routes=routes,
                tenant_id=tenant.pk,
                resolved=resolved.get(digest.recipient_id, 0),
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
        waiting_later, waiting_held = _waiting(tenant, as_of, cutoff)
    return DigestResult(
        tenant_id=tenant.pk,
        as_of=as_of,
        digests=sent,
        opted_out=opted_out,
        suppressed=suppressed,
        resolved=sum(resolved.values()),
        expired=expired,
        waiting_later=waiting_later,
        waiting_held=waiting_held,
    )


def digests_plan(*, tenant: Tenant, as_of: date) -> DigestResult:
    """What ``digests_send`` would queue now, without writing anything (``--dry-run``)."""
    with transaction.atomic():
        result = digests_send(tenant=tenant, as_of=as_of)
        transaction.set_rollback(True)
    return result
