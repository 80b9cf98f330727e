"""Delivery tracking: the provider's webhooks (through anymail) update the sent email.

anymail verifies each webhook (HTTP basic auth with ``ANYMAIL["WEBHOOK_SECRET"]``, and
Mailgun's signature) and sends its ``tracking`` signal with a normalised event. The
receiver records delivered, bounced, complained and rejected events against the
``OutboundEmail`` with that provider message id; a hard bounce or a complaint also
suppresses the address (``notifications.suppressions``). Each event is stored once under a key
(the provider's event id, or a digest of the event when it has none), unique in the
database, so a provider that repeats a webhook changes nothing the second time.

``EmailEvent`` lives here, beside its receiver; ``NotificationsConfig.import_models``
loads this module with the app's models.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from anymail.signals import AnymailTrackingEvent, EventType
from django.db import transaction

from notifications import suppressions
from notifications.models import (
    EmailEvent,
    EmailEventType,
    Notification,
    NotificationEmailStatus,
    OutboundEmail,
    OutboundStatus,
    SuppressionReason,
)

logger = logging.getLogger("notifications.email")


# Events after which the address did not get the email: the email and its notification fail.
UNDELIVERED = frozenset({EmailEventType.BOUNCED, EmailEventType.REJECTED})
# Events that make a resend a bad idea (the address bounces, or the person complained).
DO_NOT_RESEND = frozenset({EmailEventType.BOUNCED, EmailEventType.REJECTED, EmailEventType.COMPLAINED})


TRACKED_EVENTS: dict[str, EmailEventType] = {
    EventType.DELIVERED: EmailEventType.DELIVERED,
    EventType.BOUNCED: EmailEventType.BOUNCED,
    EventType.COMPLAINED: EmailEventType.COMPLAINED,
    EventType.REJECTED: EmailEventType.REJECTED,
}


def event_key(*, provider: str, event_type: str, event_id: str | None, message_id: str, occurred: str, to: str) -> str:
    """The event's identity: the provider's own id, or a digest of what makes it this event."""
    if event_id:
        return f"{provider}:{event_id}"[:255]
    digest = hashlib.sha256("\x1f".join((message_id, event_type, occurred, to)).encode()).hexdigest()
    return f"{provider}:sha256:{digest}"


def _describe(event: AnymailTrackingEvent) -> str:
    parts = [str(part) for part in (event.reject_reason, event.description, event.mta_response) if part]
    return "; ".join(parts)[:2000]


def tracking_event_record(*, provider: str, event: AnymailTrackingEvent) -> bool:
    """Record one tracking event against its email; True when it changed something.

    Events of other types, or for a message id this system did not send, are ignored.
    A bounce or rejection fails the email and its notification; the first delivered
    event after a failure does not undo it (the bounce is the later word in practice,
    and an operator sees both events in the admin).
    """
    kind = TRACKED_EVENTS.get(event.event_type)
    if kind is None or not event.message_id:
        return False
    message_id = str(event.message_id)
    with transaction.atomic():
        # The row lock serialises concurrent webhooks about the same email.
        email = OutboundEmail.objects.select_for_update().filter(message_id=message_id).first()
        if email is None:
            logger.info("tracking event for an unknown message", extra={"event": "email_event_unknown"})
            return False
        key = event_key(
            provider=provider,
            event_type=kind,
            event_id=event.event_id,
            message_id=message_id,
            occurred=event.timestamp.isoformat() if event.timestamp else "",
            to=event.recipient or "",
        )
        _, created = EmailEvent.objects.get_or_create(
            event_key=key,
            defaults={
                "tenant_id": email.tenant_id,
                "outbound_email": email,
                "event_type": kind,
                "provider": provider[:32],
                "recipient": (event.recipient or "")[:254],
                "description": _describe(event),
                "occurred_at": event.timestamp,
            },
        )
        if not created:
            return False
        if kind in UNDELIVERED:
            _mark_undelivered(email, f"{kind} ({provider}): {_describe(event)}".rstrip(": "))
        _suppress(email, kind=kind, provider=provider, event=event)
    logger.info(
        "email tracking event",
        extra={"event": "email_tracked", "kind": kind, "outbound_email_id": email.pk, "tenant_id": email.tenant_id},
    )
    return True


def _suppress(email: OutboundEmail, *, kind: str, provider: str, event: AnymailTrackingEvent) -> None:
    """A hard bounce suppresses the address for every tenant; a complaint, for this email's tenant
    (the person reported this firm's email, not every firm's)."""
    description = f"{kind} ({provider}): {_describe(event)}".rstrip(": ")
    address = event.recipient or email.to_email
    if kind == EmailEventType.BOUNCED and suppressions.bounce_is_hard(event):
        suppressions.suppression_add(
            email=address, reason=SuppressionReason.BOUNCED, tenant_id=None, description=description
        )
    elif kind == EmailEventType.COMPLAINED:
        suppressions.suppression_add(
            email=address, reason=SuppressionReason.COMPLAINED, tenant_id=email.tenant_id, description=description
        )


def _mark_undelivered(email: OutboundEmail, reason: str) -> None:
    OutboundEmail.objects.filter(pk=email.pk).update(status=OutboundStatus.FAILED, last_error=reason)
    if email.notification_id:
        Notification.objects.filter(pk=email.notification_id, tenant_id=email.tenant_id).update(
            email_status=NotificationEmailStatus.FAILED
        )


def tracking_event_receive(sender: Any, event: AnymailTrackingEvent, esp_name: str, **kwargs: Any) -> None:
    """anymail's ``tracking`` signal receiver (connected in ``NotificationsConfig.ready``)."""
    tracking_event_record(provider=esp_name, event=event)
