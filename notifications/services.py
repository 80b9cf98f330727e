"""Writes of the notifications domain: queueing emails."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from compliance.selectors import tenant_get
from kgc import jobs
from notifications.exceptions import InvalidEmailRequest
from notifications.models import OutboundEmail

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
    for field, value, limit in (
        ("recipient_email", recipient_email, 254),
        ("recipient_name", recipient_name, 200),
        ("subject", subject, 300),
    ):
        if not isinstance(value, str):
            errors[field] = "must be a string"
        elif "\r" in value or "\n" in value:
            errors[field] = "must not contain line breaks"
        elif len(value) > limit:
            errors[field] = f"must be at most {limit} characters"
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
