"""In-app notifications and the outbound emails that mirror them.

"Once and only once" is enforced here, in the database: a notification's
``dedupe_key`` and an email's ``idempotency_key`` are unique, so a job that runs
twice, or two workers running the same job, cannot add a second row.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from compliance.models import Tenant


class NotificationKind(models.TextChoices):
    DOCUMENT_EXPIRY = "document_expiry", "Document expiry"
    FILING_REMINDER = "filing_reminder", "Filing reminder"
    COMPLIANCE_ALERT = "compliance_alert", "Compliance alert"


class NotificationUrgency(models.TextChoices):
    URGENT = "URGENT", "Urgent"
    HIGH = "HIGH", "High"
    NORMAL = "NORMAL", "Normal"


class NotificationEmailStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


class Notification(models.Model):
    Kind = NotificationKind

    Urgency = NotificationUrgency
    EmailStatus = NotificationEmailStatus

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="notifications")
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    urgency = models.CharField(max_length=8, choices=Urgency.choices, null=True, blank=True)
    title = models.CharField(max_length=300)
    body = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    dedupe_key = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)
    email_status = models.CharField(
        max_length=8, choices=NotificationEmailStatus.choices, default=NotificationEmailStatus.PENDING
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=NotificationKind.values), name="notification_kind_valid"),
            models.CheckConstraint(
                condition=Q(email_status__in=NotificationEmailStatus.values), name="notification_email_status_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["recipient", "read_at"], name="notification_inbox_idx"),
            models.Index(fields=["tenant", "kind", "created_at"], name="notification_tenant_kind_idx"),
        ]

    def __str__(self) -> str:
        return self.title


class OutboundStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class OutboundEmail(models.Model):
    Status = OutboundStatus

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="outbound_emails")
    notification = models.ForeignKey(
        Notification, on_delete=models.SET_NULL, null=True, blank=True, related_name="emails"
    )
    to_email = models.EmailField()
    to_name = models.CharField(max_length=200, blank=True)
    subject = models.CharField(max_length=300)
    template = models.CharField(max_length=64)
    context = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # The worker sending it stopped between the claim and the record: it may have reached
    # the recipient. Only an explicit resend of this one email sends it again.
    delivery_unknown = models.BooleanField(default=False, db_default=False)
    message_id = models.CharField(max_length=255, blank=True)
    idempotency_key = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=OutboundStatus.values), name="outbound_status_valid"),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="outbound_status_idx"),
            models.Index(fields=["tenant", "created_at"], name="outbound_tenant_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.subject} → {self.to_email}"


class EmailEventType(models.TextChoices):
    DELIVERED = "delivered", "Delivered"
    BOUNCED = "bounced", "Bounced"
    COMPLAINED = "complained", "Complained (spam report)"
    REJECTED = "rejected", "Rejected by the provider"


class EmailEvent(models.Model):
    """One provider event about one sent email (stored once per ``event_key``)."""

    Type = EmailEventType

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="email_events")
    outbound_email = models.ForeignKey(OutboundEmail, on_delete=models.CASCADE, related_name="events")
    event_type = models.CharField(max_length=16, choices=EmailEventType.choices)
    event_key = models.CharField(max_length=255, unique=True)
    provider = models.CharField(max_length=32)
    recipient = models.CharField(max_length=254, blank=True)
    description = models.TextField(blank=True)
    occurred_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.CheckConstraint(condition=Q(event_type__in=EmailEventType.values), name="email_event_type_valid"),
        ]
        indexes = [models.Index(fields=["outbound_email", "received_at"], name="email_event_email_idx")]

    def __str__(self) -> str:
        return f"{self.get_event_type_display()} ({self.provider})"
