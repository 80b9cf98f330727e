"""The outbox's indexes and constraints, built without blocking the email table's writers.

Each index is built (or dropped) concurrently and each constraint, added unvalidated by
0006, is validated under a lock that lets inserts and updates go on: the migration runs
outside a transaction.

Every email is written three times on its way (queued, sending, its outcome), and every
write of a changed status touches each of the table's indexes, so two go: the tenant's
own index, which ``outbound_tenant_idx`` (tenant, created_at) already serves, and the
entries of the message-id index for emails not yet sent (the tracking webhooks look up
sent emails only).
"""

import django.db.models.deletion
from django.contrib.postgres.operations import AddIndexConcurrently, ValidateConstraint
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("notifications", "0006_email_outbox")]

    operations = [
        AddIndexConcurrently(
            model_name="outboundemail",
            index=models.Index(
                condition=models.Q(("status", "queued")),
                fields=["priority", "fair_key", "id"],
                name="outbound_queued_idx",
            ),
        ),
        AddIndexConcurrently(
            model_name="outboundemail",
            index=models.Index(
                condition=models.Q(("status", "retrying")), fields=["available_at"], name="outbound_retrying_idx"
            ),
        ),
        AddIndexConcurrently(
            model_name="outboundemail",
            index=models.Index(
                condition=models.Q(("status", "sending")), fields=["claimed_by"], name="outbound_sending_idx"
            ),
        ),
        migrations.RunSQL(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS outbound_message_id_sent_idx "
            "ON notifications_outboundemail (message_id) WHERE message_id <> ''",
            "DROP INDEX CONCURRENTLY IF EXISTS outbound_message_id_sent_idx",
        ),
        migrations.RunSQL(
            "DROP INDEX CONCURRENTLY IF EXISTS outbound_message_id_idx",
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS outbound_message_id_idx ON notifications_outboundemail (message_id)",
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="outboundemail",
                    name="tenant",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="outbound_emails",
                        to="compliance.tenant",
                    ),
                )
            ],
            database_operations=[
                migrations.RunSQL(
                    "DROP INDEX CONCURRENTLY IF EXISTS notifications_outboundemail_tenant_id_892ef2b6",
                    "CREATE INDEX CONCURRENTLY IF NOT EXISTS notifications_outboundemail_tenant_id_892ef2b6 "
                    "ON notifications_outboundemail (tenant_id)",
                )
            ],
        ),
        ValidateConstraint(model_name="outboundemail", name="outbound_status_valid"),
        ValidateConstraint(model_name="outboundemail", name="outbound_priority_valid"),
    ]
