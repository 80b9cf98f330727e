"""Overdue filing escalations, the morning runs, and what a digest's email outcome makes of its items.

* A new kind (``filing_escalation``) and two final statuses of a digest item: ``resolved``
  (left out: its document was renewed or its filing filed) and ``expired`` (waited longer
  than ``KGC_DIGEST_MAX_WAIT_DAYS``).
* ``MorningRun``: the hourly morning fan-out's one run per tenant and local day.
* A digest item may keep its digest when that digest's email failed or was suppressed,
  with that status; a trigger on the email row sets it (and back to ``digested`` when a
  resend succeeds), whatever sends the email.

``notifications_notification`` is large: its check constraints are replaced NOT VALID (a
brief lock, no scan), then validated in their own transactions (no lock on writes while
the table is scanned). Hence a non-atomic migration.
"""

from django.db import migrations, models
from django.db.models import Q

KINDS = ["document_expiry", "filing_reminder", "compliance_alert", "filing_escalation"]
STATUSES = [
    "pending",
    "queued",
    "sent",
    "failed",
    "skipped",
    "opted_out",
    "digest_pending",
    "digested",
    "suppressed",
    "resolved",
    "expired",
]
STATUS_CHOICES = [
    ("pending", "Pending"),
    ("queued", "Queued"),
    ("sent", "Sent"),
    ("failed", "Failed"),
    ("skipped", "Skipped (no email address)"),
    ("opted_out", "Opted out (email off for this kind)"),
    ("digest_pending", "Waiting for the daily digest"),
    ("digested", "Sent in a daily digest"),
    ("suppressed", "Suppressed (the address bounced or complained)"),
    ("resolved", "Left out of its digest: resolved (document renewed, filing filed)"),
    ("expired", "Expired: waited too long for a digest (member inactive or removed)"),
]
KIND_CHOICES = [
    ("document_expiry", "Document expiry"),
    ("filing_reminder", "Filing reminder"),
    ("compliance_alert", "Compliance alert"),
    ("filing_escalation", "Overdue filing escalation"),
]


def _in(values: list[str]) -> str:
    return ", ".join(f"'{value}'" for value in values)


CHECKS = {
    "notification_kind_valid": f'"kind" IN ({_in(KINDS)})',
    "notification_email_status_valid": f'"email_status" IN ({_in(STATUSES)})',
    "notification_digested_in_one_digest": (
        '(("digest_id" IS NOT NULL AND "email_status" = \'digested\')'
        " OR \"email_status\" IN ('failed', 'suppressed')"
        " OR (NOT (\"email_status\" IN ('digested', 'failed', 'suppressed')) AND \"digest_id\" IS NULL))"
    ),
}
OLD_CHECKS = {
    "notification_kind_valid": "\"kind\" IN ('document_expiry', 'filing_reminder', 'compliance_alert')",
    "notification_email_status_valid": f'"email_status" IN ({_in(STATUSES[:9])})',
    "notification_digested_in_one_digest": (
        '(("digest_id" IS NOT NULL AND "email_status" = \'digested\')'
        ' OR (NOT ("email_status" = \'digested\') AND "digest_id" IS NULL))'
    ),
}


def _replace(name: str, checks: dict[str, str]) -> str:
    return (
        f"ALTER TABLE notifications_notification DROP CONSTRAINT IF EXISTS {name}, "
        f"ADD CONSTRAINT {name} CHECK ({checks[name]}) NOT VALID;"
    )


def _validate(name: str) -> str:
    return f"ALTER TABLE notifications_notification VALIDATE CONSTRAINT {name};"


# A digest's email reaching its end (sent, failed for good, suppressed) is mirrored into the
# digest's items, as a notification's own email is mirrored into it: failed and suppressed
# items say so instead of claiming "digested"; a resend that succeeds makes them digested
# again. Only digests' emails are looked at: the trigger's condition spares every other email.
DIGEST_OUTCOME_TRIGGER = """
CREATE OR REPLACE FUNCTION notifications_digest_outcome() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    item_status text := CASE NEW.status WHEN 'sent' THEN 'digested' ELSE NEW.status END;
BEGIN
    UPDATE notifications_notification AS n
       SET email_status = item_status
      FROM notifications_digest AS d
     WHERE d.outbound_email_id = NEW.id AND n.digest_id = d.id AND n.tenant_id = d.tenant_id
       AND n.email_status <> item_status;
    RETURN NULL;
END
$$;
CREATE TRIGGER notifications_digest_outcome
    AFTER UPDATE OF status ON notifications_outboundemail
    FOR EACH ROW
    WHEN (NEW.template = 'daily-digest' AND NEW.notification_id IS NULL AND OLD.status IS DISTINCT FROM NEW.status
          AND NEW.status IN ('sent', 'failed', 'suppressed'))
    EXECUTE FUNCTION notifications_digest_outcome();
"""
DIGEST_OUTCOME_TRIGGER_DROP = """
DROP TRIGGER IF EXISTS notifications_digest_outcome ON notifications_outboundemail;
DROP FUNCTION IF EXISTS notifications_digest_outcome();
"""


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("compliance", "0004_local_mornings_calendars"),
        ("notifications", "0004_preferences_digests_suppressions"),
    ]

    operations = [
        migrations.CreateModel(
            name="MorningRun",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("local_date", models.DateField()),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "tenant",
                    models.ForeignKey(
                        on_delete=models.deletion.CASCADE, related_name="morning_runs", to="compliance.tenant"
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("tenant", "local_date"), name="morning_run_one_per_day")
                ],
            },
        ),
        migrations.AlterField(
            model_name="notification",
            name="email_status",
            field=models.CharField(choices=STATUS_CHOICES, default="pending", max_length=16),
        ),
        migrations.AlterField(
            model_name="notification",
            name="kind",
            field=models.CharField(choices=KIND_CHOICES, max_length=32),
        ),
        migrations.AlterField(
            model_name="notificationpreference",
            name="kind",
            field=models.CharField(choices=KIND_CHOICES, max_length=32),
        ),
        # The preferences table is small: Django's own operations.
        migrations.RemoveConstraint(model_name="notificationpreference", name="notification_preference_kind"),
        migrations.AddConstraint(
            model_name="notificationpreference",
            constraint=models.CheckConstraint(condition=Q(kind__in=KINDS), name="notification_preference_kind"),
        ),
        # The notifications table is not: NOT VALID first, VALIDATE after (see the docstring).
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveConstraint(model_name="notification", name="notification_kind_valid"),
                migrations.RemoveConstraint(model_name="notification", name="notification_email_status_valid"),
                migrations.RemoveConstraint(model_name="notification", name="notification_digested_in_one_digest"),
                migrations.AddConstraint(
                    model_name="notification",
                    constraint=models.CheckConstraint(condition=Q(kind__in=KINDS), name="notification_kind_valid"),
                ),
                migrations.AddConstraint(
                    model_name="notification",
                    constraint=models.CheckConstraint(
                        condition=Q(email_status__in=STATUSES), name="notification_email_status_valid"
                    ),
                ),
                migrations.AddConstraint(
                    model_name="notification",
                    constraint=models.CheckConstraint(
                        condition=Q(email_status="digested", digest__isnull=False)
                        | Q(email_status__in=["failed", "suppressed"])
                        | (~Q(email_status__in=["digested", "failed", "suppressed"]) & Q(digest__isnull=True)),
                        name="notification_digested_in_one_digest",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(_replace(name, CHECKS), _replace(name, OLD_CHECKS)) for name in CHECKS
            ],
        ),
        *(migrations.RunSQL(_validate(name), migrations.RunSQL.noop) for name in CHECKS),
        migrations.RunSQL(DIGEST_OUTCOME_TRIGGER, DIGEST_OUTCOME_TRIGGER_DROP),
    ]
