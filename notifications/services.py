"""Writes of the notifications domain: in-app notifications and the emails that mirror them."""

from __future__ import annotations

import json
import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import DataError, IntegrityError, connection, transaction
from django.utils import timezone

from compliance.models import Tenant
from compliance.selectors import tenant_get
from kgc.queue import tracing
from notifications import outbox, preferences, selectors
from notifications.exceptions import InvalidEmailRequest, UnknownEmail
from notifications.models import EmailPriority, Notification, NotificationEmailStatus, OutboundEmail
from notifications.rendering import template_data_errors
from notifications.texts import header_text, text_fit

logger = logging.getLogger("notifications.delivery")

SEND_EMAIL_TASK = "notifications.send_email"
EXPIRY_TASK = "notifications.check_expiry"
FILING_REMINDER_TASK = "notifications.send_filing_reminders"
DIGEST_TASK = "notifications.send_digests"
ESCALATION_TASK = "notifications.escalate_overdue_filings"
DIGEST_TEMPLATE = "daily-digest"
EMAIL_TEMPLATES = ("document-expiry", "filing-reminder", "compliance-alert", "custom")
MAX_DATA_BYTES = 32 * 1024
# An email's priority as callers name it (the API, job_helpers.enqueue_email).
PRIORITY_NAMES: dict[str, int] = {choice.label.lower(): choice.value for choice in EmailPriority}


def email_request_errors(
    *,
    recipient_email: object,
    recipient_name: object,
    subject: object,
    template: object,
    data: object,
    templates: tuple[str, ...] = EMAIL_TEMPLATES,
) -> dict[str, str]:
    """What is wrong with an email request, field by field (empty when it is fine).

    ``templates`` are those the caller may ask for: the API's by default (the digest's
    template is the digest run's own, though ``send_test_email`` may try it).
    """
    errors: dict[str, str] = {}
    for name, value, limit in (
        ("recipient_email", recipient_email, 254),
        ("recipient_name", recipient_name, 200),
        ("subject", subject, 300),
    ):
        if not isinstance(value, str):
            errors[name] = "must be a string"
        elif "\r" in value or "\n" in value:
            errors[name] = "must not contain line breaks"
        elif len(value) > limit:
            errors[name] = f"must be at most {limit} characters"
    if "recipient_email" not in errors and isinstance(recipient_email, str):
        try:
            validate_email(recipient_email)
        except ValidationError:
            errors["recipient_email"] = f"{recipient_email!r} is not a valid email address"
    if isinstance(subject, str) and not subject.strip() and "subject" not in errors:
        errors["subject"] = "must not be empty"
    if template not in templates:
        errors["template"] = f"unknown template {template!r}; known: {', '.join(templates)}"
    if not isinstance(data, dict):
        errors["data"] = "must be an object"
    elif template in templates and (data_errors := template_data_errors(str(template), data)):
        # The fields the template needs, checked now: the caller hears of a missing one
        # instead of an email failing later in the queue.
        errors.update(data_errors)
    else:
        try:
            size = len(json.dumps(data).encode())
        except (TypeError, ValueError):
            errors["data"] = "must be JSON (strings, numbers, lists, objects)"
        else:
            if size > MAX_DATA_BYTES:
                errors["data"] = f"is {size} bytes of JSON; at most {MAX_DATA_BYTES} allowed"
    return errors


def email_enqueue(
    *,
    tenant_id: int,
    recipient_email: str,
    recipient_name: str,
    subject: str,
    template: str,
    data: dict[str, Any],
    priority: str | None = None,
    idempotency_key: str | None = None,
) -> OutboundEmail:
    """Queue one email in the outbox (``notifications/outbox.py``) and return its row.

    ``priority`` is ``urgent``, ``high``, ``normal`` (the default) or ``low``; the email takes
    its tenant's next place in line in that priority. Inside ``transaction.atomic()`` it is
    queued when the caller's transaction commits, and not at all if it rolls back. Raises
    ``UnknownTenant`` or ``InvalidEmailRequest`` (both ``ValueError``) and writes nothing
    when the request is bad.
    """
    errors = email_request_errors(
        recipient_email=recipient_email, recipient_name=recipient_name, subject=subject, template=template, data=data
    )
    if priority is not None and (not isinstance(priority, str) or priority not in PRIORITY_NAMES):
        errors["priority"] = f"must be one of {', '.join(PRIORITY_NAMES)}, got {priority!r}"
    if errors:
        raise InvalidEmailRequest(errors)
    tenant = tenant_get(tenant_id)
    rank = PRIORITY_NAMES[priority or "normal"]
    with transaction.atomic():
        return OutboundEmail.objects.create(
            tenant=tenant,
            to_email=recipient_email,
            to_name=recipient_name,
            subject=subject,
            template=template,
            context=data,
            priority=rank,
            fair_key=outbox.email_places_take(tenant_id=tenant.pk, priority=rank),
            idempotency_key=idempotency_key or f"adhoc:{uuid.uuid4()}",
            trace_context=tracing.context_carrier(),
        )


def email_describe(email_id: int) -> dict[str, Any]:
    """One email's state, as the API and ``job_helpers.get_email`` report it."""
    known = isinstance(email_id, int) and 0 < email_id < 2**63
    email = OutboundEmail.objects.filter(pk=email_id).first() if known else None
    if email is None:
        raise UnknownEmail(f"no email with id {email_id!r}")
    return {
        "id": email.pk,
        "queue": "email",
        "tenant_id": email.tenant_id,
        "status": email.status,
        "priority": EmailPriority(email.priority).label.lower(),
        "attempts": email.attempts,
        "last_error": email.last_error,
        "delivery_unknown": email.delivery_unknown,
        "message_id": email.message_id,
        "created_at": email.created_at.isoformat(),
        "sent_at": email.sent_at.isoformat() if email.sent_at else None,
    }


@dataclass(frozen=True)
class NotificationDraft:
    """One notification to one recipient, with the email that mirrors it."""

    recipient_id: int
    recipient_email: str
    recipient_name: str
    kind: str
    title: str
    body: str
    dedupe_key: str
    email_template: str
    email_subject: str
    data: dict[str, Any] = field(default_factory=dict)
    urgency: str | None = None


@dataclass(frozen=True)
class SkippedDraft:
    """A draft the database refused (a value it cannot store): recorded, not delivered."""

    dedupe_key: str
    reason: str


@dataclass(frozen=True)
class DeliveryResult:
    notifications: int = 0
    emails: int = 0  # queued now, one per notification
    duplicates: int = 0
    skipped: tuple[SkippedDraft, ...] = ()
    by_status: dict[str, int] = field(default_factory=dict)  # the new notifications' email_status

    @property
    def digest_pending(self) -> int:
        return self.by_status.get(NotificationEmailStatus.DIGEST_PENDING, 0)

    @property
    def opted_out(self) -> int:
        return self.by_status.get(NotificationEmailStatus.OPTED_OUT, 0)

    @property
    def suppressed(self) -> int:
        return self.by_status.get(NotificationEmailStatus.SUPPRESSED, 0)


# One statement, whatever the number of drafts; Python builds no row objects, which is
# what made a tenant's morning run slow. ON CONFLICT DO NOTHING on the unique dedupe_key:
# a second run, or a second worker running the same job at the same moment, inserts
# nothing (the second waits on the first's index entry, then sees it). Each draft comes
# with its email_status, decided by the preference rules; only the notifications this
# statement created with status "queued" get an email, in the outbox: its priority from
# the notification's urgency, and the tenant's next places in line in that priority
# (notifications_email_places, once per priority), in the caller's transaction.
_DELIVER_SQL = """
WITH drafts AS (
    SELECT *
      FROM jsonb_to_recordset(%(drafts)s::jsonb) AS d(
           recipient_id bigint, recipient_email text, recipient_name text, kind text, urgency text,
           title text, body text, data jsonb, dedupe_key text, email_template text, email_subject text,
           email_status text, email_priority smallint)
), new_notifications AS (
    INSERT INTO notifications_notification
           (tenant_id, recipient_id, kind, urgency, title, body, data, dedupe_key, created_at, email_status)
    SELECT %(tenant_id)s, recipient_id, kind, urgency, title, body, data, dedupe_key, %(created_at)s, email_status
      FROM drafts
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING id, dedupe_key, email_status
), to_email AS (
    SELECT n.id, d.*, row_number() OVER (PARTITION BY d.email_priority ORDER BY n.id) - 1 AS nth
      FROM new_notifications AS n
      JOIN drafts AS d USING (dedupe_key)
     WHERE n.email_status = 'queued'
), places AS (
    SELECT email_priority, notifications_email_places(%(tenant_id)s, email_priority, count(*)::int) AS first
      FROM to_email GROUP BY 1
), new_emails AS (
    INSERT INTO notifications_outboundemail
           (tenant_id, notification_id, to_email, to_name, subject, template, context, status, attempts,
            last_error, message_id, idempotency_key, created_at, priority, fair_key, trace_context)
    SELECT %(tenant_id)s, e.id, e.recipient_email, e.recipient_name, e.email_subject, e.email_template, e.data,
           'queued', 0, '', '', 'notification:' || e.id, now(), e.email_priority, places.first + e.nth,
           %(trace_context)s::jsonb
      FROM to_email AS e
      JOIN places USING (email_priority)
    RETURNING id
)
SELECT (SELECT count(*) FROM new_notifications),
       (SELECT count(*) FROM new_emails),
       (SELECT count(*) FROM to_email),
       (SELECT coalesce(jsonb_object_agg(email_status, created), '{}'::jsonb)
          FROM (SELECT email_status, count(*) AS created FROM new_notifications GROUP BY 1) AS by_status)
"""


_TITLE_MAX = Notification._meta.get_field("title").max_length or 300
_SUBJECT_MAX = OutboundEmail._meta.get_field("subject").max_length or 300
_NAME_MAX = OutboundEmail._meta.get_field("to_name").max_length or 200


def draft_row(draft: NotificationDraft, *, email_status: str) -> dict[str, Any]:
    """A draft as the statement's row: generated texts fitted to their columns, and the
    ones that become email headers (subject, recipient name) on one line."""
    # Shallow: the data is serialised as it is; asdict's deep copy was a tenth of a run.
    row = dict(draft.__dict__)
    row["title"] = text_fit(draft.title, _TITLE_MAX)
    row["email_subject"] = text_fit(header_text(draft.email_subject), _SUBJECT_MAX)
    row["recipient_name"] = text_fit(header_text(draft.recipient_name), _NAME_MAX)
    row["email_status"] = email_status
    row["email_priority"] = outbox.priority_for(draft.urgency)
    return row


def drafts_route(*, tenant: Tenant, drafts: list[NotificationDraft]) -> list[str]:
    """Each draft's starting ``email_status`` (see ``preferences.email_route``): the tenant's
    default, each person's choices and the suppressed addresses, read in one query."""
    facts = selectors.email_routing_facts(
        tenant=tenant,
        user_ids=sorted({d.recipient_id for d in drafts}),
        addresses=sorted({d.recipient_email for d in drafts if d.recipient_email}),
    )
    return [
        preferences.email_route(
            preference=preferences.email_preference_effective(
                chosen=facts.chosen.get((d.recipient_id, d.kind)), tenant_default=tenant.notification_email_default
            ),
            urgency=d.urgency,
            has_address=bool(d.recipient_email),
            suppressed=d.recipient_email.strip().lower() in facts.suppressed,
        )
        for d in drafts
    ]


def notifications_deliver(*, tenant: Tenant, drafts: list[NotificationDraft]) -> DeliveryResult:
    """Create each draft's notification, at most once per ``dedupe_key``, and its email as
    its recipient wants it (``drafts_route``): queued now, waiting for the daily digest, or
    none (opted out, suppressed, no address). In-app notifications are made in every case.

    One statement, so one transaction: the notifications and their ``OutboundEmail`` rows
    (idempotency key ``notification:<id>``, in the outbox's line by the notification's
    urgency) commit together or not at all, with the caller's transaction when there is
    one. A draft the database refuses (a value it cannot store) does not sink the others:
    it is logged and returned in ``skipped``, and the rest are delivered.
    """
    if not drafts:
        return DeliveryResult()
    routes = drafts_route(tenant=tenant, drafts=drafts)
    rows = list(
        {d.dedupe_key: draft_row(d, email_status=route) for d, route in zip(drafts, routes, strict=True)}.values()
    )
    try:
        # A savepoint inside the caller's transaction, so that a refused statement can be
        # taken back and the drafts delivered one by one.
        with transaction.atomic():
            notifications, emails, by_status = _deliver_rows(tenant, rows)
        skipped: list[SkippedDraft] = []
    except (DataError, IntegrityError):
        notifications, emails, by_status, skipped = _deliver_one_by_one(tenant, rows)
    return DeliveryResult(
        notifications=notifications,
        emails=emails,
        duplicates=len(drafts) - notifications - len(skipped),
        skipped=tuple(skipped),
        by_status=by_status,
    )


def _deliver_one_by_one(
    tenant: Tenant, rows: list[dict[str, Any]]
) -> tuple[int, int, dict[str, int], list[SkippedDraft]]:
    """The slow path, taken only when the one statement failed: each draft in a savepoint of its own."""
    notifications = emails = 0
    by_status: Counter[str] = Counter()
    skipped = []
    for row in rows:
        try:
            with transaction.atomic():
                created, queued, statuses = _deliver_rows(tenant, [row])
        except (DataError, IntegrityError) as exc:
            reason = _refusal_reason(exc)
            skipped.append(SkippedDraft(dedupe_key=row["dedupe_key"], reason=reason))
            logger.error(
                "notification skipped: the database refused it: %s",
                reason,
                extra={"event": "notification_skipped", "tenant_id": tenant.pk, "dedupe_key": row["dedupe_key"]},
            )
            continue
        notifications += created
        emails += queued
        by_status.update(statuses)
    return notifications, emails, dict(by_status), skipped


def _refusal_reason(exc: Exception) -> str:
    """PostgreSQL's message and detail, without the statement (it quotes every draft's data)."""
    diag = getattr(exc.__cause__, "diag", None)
    parts = [getattr(diag, "message_primary", None) or str(exc).splitlines()[0], getattr(diag, "message_detail", None)]
    return ": ".join(part for part in parts if part)[:500]


def _deliver_rows(tenant: Tenant, rows: list[dict[str, Any]]) -> tuple[int, int, dict[str, int]]:
    with connection.cursor() as cursor:
        cursor.execute(
            _DELIVER_SQL,
            {
                "tenant_id": tenant.pk,
                # The application's clock, not the database's: the digest's cut-off and the
                # age of a waiting item are on the same clock as the runs that read them.
                "created_at": timezone.now(),
                "drafts": json.dumps(rows),
                "trace_context": tracing.context_json(),
            },
        )
        notifications, emails, to_email, by_status = cursor.fetchone()
    if to_email != emails:  # the statement is all or nothing; this would be a bug in it
        raise RuntimeError(f"{to_email} queued notifications but {emails} emails")
    return notifications, emails, json.loads(by_status) if isinstance(by_status, str) else by_status
