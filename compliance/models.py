"""The compliance domain: tenants (accounting and tax firms), their staff, their clients,
the documents clients must hold and the filings they must make.

Tenant boundaries hold in the data itself: a row that names both a tenant and a client
is tied to that client's tenant by a composite foreign key (see migration 0002), and a
task assignee must be a member of the filing's tenant (a constraint trigger). ``clean()``
gives the same refusal as a readable validation error before anything reaches the database.
"""

from __future__ import annotations

import zoneinfo
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

if TYPE_CHECKING:
    from compliance.calendars import DueDate


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not an IANA time zone name (e.g. Europe/Paris)")


class NotificationEmailDefault(models.TextChoices):
    """How a tenant's members get notification emails unless they chose otherwise."""

    IMMEDIATE = "immediate", "Immediately: one email per notification"
    DAILY_DIGEST = "daily_digest", "In one daily digest (urgent ones at once)"


class Tenant(models.Model):
    NotificationEmail = NotificationEmailDefault

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    notification_email_default = models.CharField(
        max_length=16,
        choices=NotificationEmailDefault.choices,
        default=NotificationEmailDefault.IMMEDIATE,
        db_default=NotificationEmailDefault.IMMEDIATE,
        help_text="How members get notification emails unless they chose otherwise for a kind.",
    )
    # Business days (compliance/calendars.py): with a country, a due date on a weekend or a
    # holiday of that calendar moves to the next business day. Empty: nothing moves.
    holiday_country = models.CharField(
        max_length=2,
        blank=True,
        default="",
        db_default="",
        help_text="Holiday calendar: ISO country code such as US, GB, KE, IN, NZ. Empty: due dates never move.",
    )
    holiday_subdivision = models.CharField(
        max_length=16,
        blank=True,
        default="",
        db_default="",
        help_text="Optional state, province or region of that country, such as DC or CA for the US.",
    )
    # The firm's own reminder thresholds, largest first; empty: the defaults (compliance/firm_settings.py).
    expiry_reminder_days = ArrayField(
        models.PositiveSmallIntegerField(),
        null=True,
        blank=True,
        help_text="Days before a document expires to remind, e.g. 30,14,7 (the default when empty).",
    )
    filing_reminder_days = ArrayField(
        models.PositiveSmallIntegerField(),
        null=True,
        blank=True,
        help_text="Days before a filing is due to remind, e.g. 14,7,3 (the default when empty).",
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(notification_email_default__in=NotificationEmailDefault.values),
                name="tenant_notification_email_default_valid",
            ),
            # Held by the database too: empty means the default, so a list has 1 to 6 numbers
            # (compliance/firm_settings.py checks the rest and says so in words).
            *(
                models.CheckConstraint(
                    condition=Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__len__range": (1, 6)}),
                    name=f"tenant_{field}_valid",
                )
                for field in ("expiry_reminder_days", "filing_reminder_days")
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    def clean(self) -> None:
        """The admin's form errors for thresholds and calendars (the API refuses the same)."""
        super().clean()
        from compliance.firm_settings import reminder_days_normalize, reminder_settings_errors

        self.holiday_country = (self.holiday_country or "").strip().upper()
        self.holiday_subdivision = (self.holiday_subdivision or "").strip().upper()
        # The form's empty field is an empty list: the default, stored as NULL.
        self.expiry_reminder_days = self.expiry_reminder_days or None
        self.filing_reminder_days = self.filing_reminder_days or None
        errors = reminder_settings_errors({field: getattr(self, field) for field in _SETTINGS_FIELDS})
        if errors:
            raise ValidationError(errors)
        self.expiry_reminder_days = reminder_days_normalize(self.expiry_reminder_days)
        self.filing_reminder_days = reminder_days_normalize(self.filing_reminder_days)


_SETTINGS_FIELDS = ("expiry_reminder_days", "filing_reminder_days", "holiday_country", "holiday_subdivision")


class MembershipRole(models.TextChoices):
    ADMIN = "admin", "Admin"
    MANAGER = "manager", "Manager"
    COMPLIANCE_OFFICER = "compliance_officer", "Compliance officer"
    TAX_PREPARER = "tax_preparer", "Tax preparer"
    VIEWER = "viewer", "Viewer"


class Membership(models.Model):
    Role = MembershipRole

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=32, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="membership_unique_tenant_user"),
            models.CheckConstraint(condition=Q(role__in=MembershipRole.values), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.get_role_display()}) at {self.tenant}"


class Client(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="clients")
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            # Target of the composite foreign keys that keep documents, filings and
            # scores inside their client's tenant.
            models.UniqueConstraint(fields=["id", "tenant"], name="client_unique_id_tenant"),
        ]
        indexes = [models.Index(fields=["tenant", "is_active"], name="client_tenant_active_idx")]

    def __str__(self) -> str:
        return self.name


class DocumentType(models.Model):
    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Requirement(models.Model):
    """A document type the client must hold."""

    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="requirements")
    document_type = models.ForeignKey(DocumentType, on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "document_type"], name="requirement_unique_client_type"),
        ]

    def __str__(self) -> str:
        return f"{self.client}: {self.document_type}"


class TenantOwnedByClient(models.Model):
    """A row that names both a tenant and a client, which must agree."""

    class Meta:
        abstract = True

    def clean(self) -> None:
        super().clean()
        client = getattr(self, "client", None)
        if client is not None and self.tenant_id is not None and client.tenant_id != self.tenant_id:  # type: ignore[attr-defined]
            raise ValidationError({"client": "This client belongs to another tenant."})


class Document(TenantOwnedByClient):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="documents")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="documents")
    document_type = models.ForeignKey(DocumentType, on_delete=models.PROTECT, related_name="documents")
    title = models.CharField(max_length=300)
    expires_on = models.DateField(null=True, blank=True, help_text="Empty: never expires.")
    uploaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "expires_on"], name="document_tenant_expiry_idx"),
            models.Index(fields=["client", "document_type"], name="document_client_type_idx"),
        ]

    def __str__(self) -> str:
        return self.title


class FilingStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    PREPARED = "prepared", "Prepared"
    SUBMITTED = "submitted", "Submitted"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"


class Filing(TenantOwnedByClient):
    Status = FilingStatus

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="filings")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="filings")
    filing_type = models.CharField(max_length=64)
    period = models.CharField(max_length=32)
    due_date = models.DateField(help_text="The statutory due date; with a holiday calendar it may be due later.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    # A calendar of its own (a federal filing of a firm elsewhere, say); empty: the firm's.
    holiday_country = models.CharField(
        max_length=2,
        blank=True,
        default="",
        db_default="",
        help_text="Holiday calendar of this filing, if not the firm's: ISO country code such as US.",
    )
    holiday_subdivision = models.CharField(
        max_length=16,
        blank=True,
        default="",
        db_default="",
        help_text="Optional subdivision of that country, such as DC (US federal deadlines follow DC's holidays).",
    )

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(status__in=FilingStatus.values), name="filing_status_valid"),
        ]
        indexes = [models.Index(fields=["tenant", "due_date", "status"], name="filing_tenant_due_idx")]

    def __str__(self) -> str:
        return f"{self.filing_type} {self.period} ({self.client})"

    def clean(self) -> None:
        super().clean()
        from compliance.calendars import calendar_errors

        self.holiday_country = (self.holiday_country or "").strip().upper()
        self.holiday_subdivision = (self.holiday_subdivision or "").strip().upper()
        errors = calendar_errors(country=self.holiday_country, subdivision=self.holiday_subdivision)
        if errors:
            raise ValidationError({f"holiday_{field}": message for field, message in errors.items()})

    def due(self) -> DueDate:
        """Its statutory and effective due dates under its own calendar or its tenant's."""
        from compliance.calendars import calendar_of, effective_due_date

        calendar = calendar_of(
            country=self.tenant.holiday_country,
            subdivision=self.tenant.holiday_subdivision,
            override_country=self.holiday_country,
            override_subdivision=self.holiday_subdivision,
        )
        return effective_due_date(due=self.due_date, calendar=calendar)


class FilingTask(models.Model):
    filing = models.ForeignKey(Filing, on_delete=models.CASCADE, related_name="tasks")
    assignee = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="filing_tasks")
    title = models.CharField(max_length=300)
    is_done = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.title

    def clean(self) -> None:
        super().clean()
        if self.filing_id is None or self.assignee_id is None:
            return
        is_member = Membership.objects.filter(tenant_id=self.filing.tenant_id, user_id=self.assignee_id).exists()
        if not is_member:
            raise ValidationError({"assignee": "The assignee is not a member of this filing's tenant."})


class ScoreLevel(models.TextChoices):
    GREEN = "green", "Green"
    AMBER = "amber", "Amber"
    RED = "red", "Red"


class ComplianceScore(TenantOwnedByClient):
    Level = ScoreLevel

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="scores")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="scores")
    score = models.PositiveSmallIntegerField(validators=[MinValueValidator(0), MaxValueValidator(100)])
    level = models.CharField(max_length=8, choices=Level.choices)
    breakdown = models.JSONField(default=list)
    calculated_on = models.DateField(help_text="The tenant's local date the score is for.")
    calculated_at = models.DateTimeField()
    triggered_by = models.CharField(max_length=64, default="schedule")

    class Meta:
        get_latest_by = "calculated_on"
        constraints = [
            models.UniqueConstraint(fields=["client", "calculated_on"], name="score_unique_client_day"),
            models.CheckConstraint(condition=Q(score__gte=0, score__lte=100), name="score_in_range"),
            models.CheckConstraint(condition=Q(level__in=ScoreLevel.values), name="score_level_valid"),
        ]
        indexes = [models.Index(fields=["tenant", "calculated_on"], name="score_tenant_day_idx")]

    def __str__(self) -> str:
        return f"{self.client} {self.calculated_on}: {self.score} ({self.level})"
