"""In-app notifications, the outbound emails that mirror them, and how people want them.

"Once and only once" is enforced here, in the database: a notification's
``dedupe_key`` and an email's ``idempotency_key`` are unique, so a job that runs
twice, or two workers running the same job, cannot add a second row. A daily digest
is unique per (tenant, person, tenant-local day), and a notification names the one
digest that carried it (a check constraint ties ``digested`` to that digest).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower

from compliance.models import Membership, Tenant
from kgc.texts import counted


class NotificationKind(models.TextChoices):
    DOCUMENT_EXPIRY = "document_expiry", "Document expiry"
    FILING_REMINDER = "filing_reminder", "Filing reminder"
    COMPLIANCE_ALERT = "compliance_alert", "Compliance alert"
    FILING_ESCALATION = "filing_escalation", "Overdue filing escalation"


class NotificationUrgency(models.TextChoices):
    URGENT = "URGENT", "Urgent"
    HIGH = "HIGH", "High"
    NORMAL = "NORMAL", "Normal"


class NotificationEmailStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped (no email address)"
    OPTED_OUT = "opted_out", "Opted out (email off for this kind)"
    DIGEST_PENDING = "digest_pending", "Waiting for the daily digest"
    DIGESTED = "digested", "Sent in a daily digest"
    SUPPRESSED = "suppressed", "Suppressed (the address bounced or complained)"
    RESOLVED = "resolved", "Left out of its digest: resolved (document renewed, filing filed)"
    EXPIRED = "expired", "Expired: waited too long for a digest (member inactive or removed)"


# What a digest's email outcome makes of its items (a database trigger, migration 0005).
DIGEST_OUTCOMES = [NotificationEmailStatus.FAILED.value, NotificationEmailStatus.SUPPRESSED.value]


class EmailPreference(models.TextChoices):
    """How a person wants one kind of notification emailed."""

    IMMEDIATE = "immediate", "Immediately"
    DAILY_DIGEST = "daily_digest", "Daily digest"
    OFF = "off", "Off"


class Notification(models.Model):
    Kind = NotificationKind

    Urgency = NotificationUrgency
    EmailStatus = NotificationEmailStatus

    # No index of their own: notification_tenant_kind_idx and notification_inbox_idx lead with
    # them. Every index is written again when an item moves into its digest (migration 0010).
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="notifications", db_index=False)
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications", db_index=False
    )
    kind = models.CharField(max_length=32, choices=Kind.choices)
    urgency = models.CharField(max_length=8, choices=Urgency.choices, null=True, blank=True)
    title = models.CharField(max_length=300)
    body = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    dedupe_key = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)
    email_status = models.CharField(
        max_length=16, choices=NotificationEmailStatus.choices, default=NotificationEmailStatus.PENDING
    )
    # The daily digest that carried it (email_status "digested"); RESTRICT: a digest goes
    # only with its items (a tenant's deletion), never alone.
    digest = models.ForeignKey(
        "Digest", on_delete=models.RESTRICT, null=True, blank=True, related_name="items", db_index=False
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=NotificationKind.values), name="notification_kind_valid"),
            models.CheckConstraint(
                condition=Q(email_status__in=NotificationEmailStatus.values), name="notification_email_status_valid"
            ),
            # Digested only in a digest, and only a digest's outcome keeps one: each item ends in
            # exactly one digest, and an item whose digest email failed or was suppressed says so
            # (failed, suppressed) while still naming the digest that tried to carry it.
            models.CheckConstraint(
                condition=Q(email_status=NotificationEmailStatus.DIGESTED, digest__isnull=False)
                | Q(email_status__in=DIGEST_OUTCOMES)
                | (
                    ~Q(email_status__in=[NotificationEmailStatus.DIGESTED.value, *DIGEST_OUTCOMES])
                    & Q(digest__isnull=True)
                ),
                name="notification_digested_in_one_digest",
            ),
        ]
        indexes = [
            models.Index(fields=["recipient", "read_at"], name="notification_inbox_idx"),
            models.Index(fields=["tenant", "kind", "created_at"], name="notification_tenant_kind_idx"),
            # What the digest run reads: a tenant's items still waiting, by person and time.
            models.Index(
                fields=["tenant", "recipient", "created_at"],
                condition=Q(email_status=NotificationEmailStatus.DIGEST_PENDING),
                name="notification_pending_idx",
            ),
            models.Index(fields=["digest"], condition=Q(digest__isnull=False), name="notification_digest_idx"),
        ]

    def __str__(self) -> str:
        return self.title


class OutboundStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RETRYING = "retrying", "Waiting to retry"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    SUPPRESSED = "suppressed", "Suppressed (not handed to the server)"


# An email's state once it has left the outbox for good.
FINISHED_STATUSES = (OutboundStatus.SENT, OutboundStatus.FAILED, OutboundStatus.SUPPRESSED)


class EmailPriority(models.IntegerChoices):
    """Which emails the dispatcher claims first: every urgent one, of any firm, before any high one..."""

    URGENT = 0, "Urgent"
    HIGH = 1, "High"
    NORMAL = 2, "Normal"
    LOW = 3, "Low"


class OutboundEmail(models.Model):
    Status = OutboundStatus

    # Indexed by outbound_tenant_idx (tenant, created_at).
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="outbound_emails", db_index=False)
    notification = models.ForeignKey(
        Notification, on_delete=models.SET_NULL, null=True, blank=True, related_name="emails"
    )
    to_email = models.EmailField()
    to_name = models.CharField(max_length=200, blank=True)
    subject = models.CharField(max_length=300)
    template = models.CharField(max_length=64)
    context = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # The message may have reached the recipient, but nobody can tell: its sender stopped
    # between the claim and the record, or the server never answered the end of the data.
    # Only an explicit resend of this one email sends it again.
    delivery_unknown = models.BooleanField(default=False, db_default=False)
    message_id = models.CharField(max_length=255, blank=True)
    idempotency_key = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # The outbox (notifications/outbox.py): urgency first, then each firm in turn.
    priority = models.SmallIntegerField(
        choices=EmailPriority.choices, default=EmailPriority.NORMAL, db_default=EmailPriority.NORMAL
    )
    fair_key = models.BigIntegerField(
        default=0, db_default=0, help_text="Its place in line among its priority's emails (each firm in turn)."
    )
    available_at = models.DateTimeField(null=True, blank=True, help_text="When a retrying email is due again.")
    claimed_by = models.BigIntegerField(null=True, blank=True, help_text="The worker that took its last attempt.")
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="When its last attempt began.")
    finished_at = models.DateTimeField(null=True, blank=True, help_text="When it was sent, failed or suppressed.")
    # Written only while tracing is on (kgc/queue/tracing.py): its send's span is the child of this one.
    trace_context = models.JSONField(
        null=True, blank=True, editable=False, help_text="The trace context of the span that queued it."
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=OutboundStatus.values), name="outbound_status_valid"),
            models.CheckConstraint(
                condition=Q(priority__gte=EmailPriority.URGENT, priority__lte=EmailPriority.LOW),
                name="outbound_priority_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="outbound_status_idx"),
            models.Index(fields=["tenant", "created_at"], name="outbound_tenant_idx"),
            # The outbox's line: the claim reads it in order, from its head.
            models.Index(
                fields=["priority", "fair_key", "id"], condition=Q(status="queued"), name="outbound_queued_idx"
            ),
            models.Index(fields=["available_at"], condition=Q(status="retrying"), name="outbound_retrying_idx"),
            models.Index(fields=["claimed_by"], condition=Q(status="sending"), name="outbound_sending_idx"),
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


# --- Preferences, digests, suppressions ----------------------------------------------------


class NotificationPreference(models.Model):
    """How one member wants one kind of notification emailed; without a row, the tenant's
    ``notification_email_default`` applies. In-app notifications are made whatever this says.

    Tied to the membership (migration 0004): a composite foreign key on (tenant, user)
    refuses a row for someone who is not a member, and goes with the membership.
    """

    Email = EmailPreference

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="notification_preferences")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preferences"
    )
    kind = models.CharField(max_length=32, choices=NotificationKind.choices)
    email = models.CharField(max_length=16, choices=EmailPreference.choices)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant", "user", "kind"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user", "kind"], name="notification_preference_unique"),
            models.CheckConstraint(condition=Q(kind__in=NotificationKind.values), name="notification_preference_kind"),
            models.CheckConstraint(
                condition=Q(email__in=EmailPreference.values), name="notification_preference_email_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.get_email_display()}"

    def clean(self) -> None:
        """The database refuses a row for someone who is not a member; say so readably first."""
        super().clean()
        if self.tenant_id is None or self.user_id is None:
            return
        if not Membership.objects.filter(tenant_id=self.tenant_id, user_id=self.user_id).exists():
            raise ValidationError({"tenant": "This user is not a member of this tenant."})


class Digest(models.Model):
    """One person's daily digest email in one tenant for one tenant-local day.

    Unique per (tenant, recipient, local_date): two workers, or a catch-up, cannot send a
    second. It carries the person's items still waiting and created before ``cutoff``
    (the tenant's digest hour that day); each item names this digest.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="digests")
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="digests")
    local_date = models.DateField(help_text="The tenant-local day of this digest.")
    cutoff = models.DateTimeField(help_text="Items created before this instant are in it.")
    items_count = models.PositiveIntegerField(default=0)
    outbound_email = models.OneToOneField(
        OutboundEmail, on_delete=models.SET_NULL, null=True, blank=True, related_name="digest"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-local_date", "recipient"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "recipient", "local_date"], name="digest_one_per_person_per_day"),
            # Target of the composite foreign key that keeps a digest's items in its tenant.
            models.UniqueConstraint(fields=["id", "tenant"], name="digest_unique_id_tenant"),
        ]
        indexes = [models.Index(fields=["tenant", "local_date"], name="digest_tenant_day_idx")]

    def __str__(self) -> str:
        return f"Digest of {self.local_date} for {self.recipient} ({counted(self.items_count, 'item')})"


class DigestRun(models.Model):
    """The hourly fan-out deferred this tenant's digests for this tenant-local day: at most
    one run per tenant and day, however many ticks find the digest hour passed."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="digest_runs")
    local_date = models.DateField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "local_date"], name="digest_run_one_per_day")]

    def __str__(self) -> str:
        return f"{self.tenant} {self.local_date}"


class MorningRun(models.Model):
    """The hourly morning fan-out deferred this tenant's checks (expiring documents, filings
    due, overdue filings) for this tenant-local day: at most once per tenant and day,
    however many ticks find the reminder hour passed."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="morning_runs")
    local_date = models.DateField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "local_date"], name="morning_run_one_per_day")]

    def __str__(self) -> str:
        return f"{self.tenant} {self.local_date}"


class SuppressionReason(models.TextChoices):
    BOUNCED = "bounced", "Bounced (the address does not exist)"
    COMPLAINED = "complained", "Complained (reported as spam)"
    MANUAL = "manual", "Added by an operator"


class Suppression(models.Model):
    """An address no email is handed to the server for: every tenant's (``tenant`` empty)
    or one tenant's. Addresses are kept in lower case, and unique per tenant (one row for
    every tenant, too: NULLS NOT DISTINCT)."""

    Reason = SuppressionReason

    email = models.EmailField(max_length=254)
    reason = models.CharField(max_length=16, choices=SuppressionReason.choices)
    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="suppressions",
        help_text="Empty: every tenant.",
    )
    description = models.TextField(blank=True, help_text="What happened (the server's or provider's words).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["email", "tenant"], name="suppression_unique_email_tenant", nulls_distinct=False
            ),
            models.CheckConstraint(condition=Q(reason__in=SuppressionReason.values), name="suppression_reason_valid"),
            models.CheckConstraint(condition=Q(email=Lower("email")), name="suppression_email_lower_case"),
        ]

    def __str__(self) -> str:
        return f"{self.email} ({self.get_reason_display()})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.email = self.email.strip().lower()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        super().clean()
        self.email = self.email.strip().lower()  # before the constraints are checked (a form's full_clean)


# --- The outbox's bookkeeping (notifications/outbox.py) ---------------------------------------


class EmailFairClock(models.Model):
    """Where one tenant's emails of one priority stand in line: the last place given out.

    A new email takes the place after the later of this and the head of the line, so a
    firm with a long backlog keeps its own turn while a firm with nothing waiting is
    served within one round of the firms that are.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    priority = models.PositiveSmallIntegerField(choices=EmailPriority.choices)
    last_key = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "priority"], name="email_fair_clock_unique")]

    def __str__(self) -> str:
        return f"{self.tenant_id}/{self.get_priority_display()}: {self.last_key}"


class EmailCount(models.Model):
    """Emails entering and leaving each state, kept by triggers on the outbox (a statement adds
    one row per state and minute it touched) and folded together by the dispatcher.

    ``delta`` sums to the emails in a state; for the finished states each email counts in the
    minute it finished, so a window of minutes counts the emails that finished in it.
    ``entered`` only ever grows: emails that entered the state in that minute.
    """

    state = models.CharField(max_length=16)
    bucket = models.DateTimeField()
    delta = models.BigIntegerField(default=0)
    entered = models.BigIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["state", "bucket"], name="email_count_state_idx")]

    def __str__(self) -> str:
        return f"{self.state} {self.bucket:%Y-%m-%d %H:%M}: {self.delta:+d}"
