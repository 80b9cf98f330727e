"""Writes of the notifications domain: in-app notifications and the emails that mirror them."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection, transaction
from procrastinate.contrib.django import app

from compliance.models import Tenant
from compliance.selectors import tenant_get
from kgc import jobs
from notifications.exceptions import InvalidEmailRequest
from notifications.models import OutboundEmail
from notifications.rendering import template_data_errors

SEND_EMAIL_TASK = "notifications.send_email"
EXPIRY_TASK = "notifications.check_expiry"
FILING_REMINDER_TASK = "notifications.send_filing_reminders"
EMAIL_TEMPLATES = ("document-expiry", "filing-reminder", "compliance-alert", "custom")
MAX_DATA_BYTES = 32 * 1024


def email_request_errors(
    *, recipient_email: object, recipient_name: object, subject: object, template: object, data: object
) -> dict[str, str]:
    """What is wrong with an email request, field by field (empty when it is fine)."""
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
    if "recipient_email" not in errors:
        try:
            validate_email(recipient_email)
        except ValidationError:
            errors["recipient_email"] = f"{recipient_email!r} is not a valid email address"
    if isinstance(subject, str) and not subject.strip() and "subject" not in errors:
        errors["subject"] = "must not be empty"
    if template not in EMAIL_TEMPLATES:
        errors["template"] = f"unknown template {template!r}; known: {', '.join(EMAIL_TEMPLATES)}"
    if not isinstance(data, dict):
        errors["data"] = "must be an object"
    elif template in EMAIL_TEMPLATES and (data_errors := template_data_errors(template, data)):
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
    idempotency_key: str | None = None,
) -> tuple[OutboundEmail, int]:
    """Store an outbound email and defer its send job in one transaction; return both.

    Raises ``UnknownTenant`` or ``InvalidEmailRequest`` (both ``ValueError``) and writes
    nothing when the request is bad.
    """
    errors = email_request_errors(
        recipient_email=recipient_email, recipient_name=recipient_name, subject=subject, template=template, data=data
    )
    if errors:
        raise InvalidEmailRequest(errors)
    tenant = tenant_get(tenant_id)
    with transaction.atomic():
        email = OutboundEmail.objects.create(
            tenant=tenant,
            to_email=recipient_email,
            to_name=recipient_name,
            subject=subject,
            template=template,
            context=data,
            idempotency_key=idempotency_key or f"adhoc:{uuid.uuid4()}",
        )
        job_id, _ = jobs.job_defer(
            task_name=SEND_EMAIL_TASK, kwargs={"outbound_email_id": email.pk, "tenant_id": tenant.pk}
        )
    return email, job_id


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
class DeliveryResult:
    notifications: int = 0
    emails: int = 0
    duplicates: int = 0


# ON CONFLICT DO NOTHING on the unique dedupe_key: a second run, or a second worker
# running the same job at the same moment, inserts nothing (the second waits on the
# first's index entry, then sees it). RETURNING gives only the rows this call created,
# and only those get an email.
_INSERT_NOTIFICATIONS = """
INSERT INTO notifications_notification
       (tenant_id, recipient_id, kind, urgency, title, body, data, dedupe_key, created_at, email_status)
SELECT %(tenant_id)s, d.recipient_id, d.kind, d.urgency, d.title, d.body, d.data, d.dedupe_key, now(), 'queued'
  FROM jsonb_to_recordset(%(drafts)s::jsonb) AS d(
       recipient_id bigint, kind text, urgency text, title text, body text, data jsonb, dedupe_key text)
ON CONFLICT (dedupe_key) DO NOTHING
RETURNING id, dedupe_key
"""


def notifications_deliver(*, tenant: Tenant, drafts: list[NotificationDraft]) -> DeliveryResult:
    """Create each draft's notification and queued email, at most once per ``dedupe_key``.

    One transaction: the notifications, their ``OutboundEmail`` rows (idempotency key
    ``notification:<id>``) and the send jobs commit together or not at all. A constant
    number of statements, whatever the number of drafts.
    """
    if not drafts:
        return DeliveryResult()
    by_key = {draft.dedupe_key: draft for draft in drafts}
    rows = [
        {
            k: v
            for k, v in asdict(d).items()
            if k not in ("recipient_email", "recipient_name", "email_template", "email_subject")
        }
        for d in by_key.values()
    ]
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_INSERT_NOTIFICATIONS, {"tenant_id": tenant.pk, "drafts": json.dumps(rows)})
            created = cursor.fetchall()
        emails = OutboundEmail.objects.bulk_create(
            [
                OutboundEmail(
                    tenant=tenant,
                    notification_id=notification_id,
                    to_email=by_key[key].recipient_email,
                    to_name=by_key[key].recipient_name,
                    subject=by_key[key].email_subject,
                    template=by_key[key].email_template,
                    context=by_key[key].data,
                    idempotency_key=f"notification:{notification_id}",
                )
                for notification_id, key in created
            ]
        )
        if emails:
            app.configure_task(
                SEND_EMAIL_TASK, allow_unknown=False, priority=jobs.priority_to_stored(None)
            ).batch_defer(*({"outbound_email_id": email.pk, "tenant_id": tenant.pk} for email in emails))
    return DeliveryResult(notifications=len(created), emails=len(emails), duplicates=len(drafts) - len(created))
