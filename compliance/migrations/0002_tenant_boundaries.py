"""Tenant boundaries in the database itself.

A document, filing or score names a tenant and a client; the composite foreign key
(client_id, tenant_id) → client(id, tenant_id) refuses a client of another tenant.
A filing task's assignee must be a member of the filing's tenant: a constraint
trigger checks it (a foreign key cannot, the task has no tenant column), and raises
SQLSTATE 23503 so Django reports an IntegrityError like any foreign key.
"""

from django.db import migrations

COMPOSITE_FKS = [
    ("compliance_document", "document_client_same_tenant_fk"),
    ("compliance_filing", "filing_client_same_tenant_fk"),
    ("compliance_compliancescore", "score_client_same_tenant_fk"),
]

ASSIGNEE_TRIGGER = """
CREATE FUNCTION compliance_filingtask_assignee_is_member() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1
          FROM compliance_filing f
          JOIN compliance_membership m ON m.tenant_id = f.tenant_id
         WHERE f.id = NEW.filing_id AND m.user_id = NEW.assignee_id
    ) THEN
        RAISE EXCEPTION 'filing task assignee % is not a member of the tenant of filing %',
            NEW.assignee_id, NEW.filing_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE CONSTRAINT TRIGGER compliance_filingtask_assignee_is_member
    AFTER INSERT OR UPDATE OF filing_id, assignee_id ON compliance_filingtask
    DEFERRABLE INITIALLY IMMEDIATE
    FOR EACH ROW EXECUTE FUNCTION compliance_filingtask_assignee_is_member();
"""

ASSIGNEE_TRIGGER_DROP = """
DROP TRIGGER IF EXISTS compliance_filingtask_assignee_is_member ON compliance_filingtask;
DROP FUNCTION IF EXISTS compliance_filingtask_assignee_is_member();
"""


def _fk_sql(table: str, name: str) -> str:
    # NOT VALID: added under a brief lock, then validated (a scan that lets writes go on) in a
    # transaction of its own: documents and filings are large and written every day.
    return (
        f"ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY (client_id, tenant_id) "
        "REFERENCES compliance_client (id, tenant_id) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE NOT VALID;"
    )


def _fk_operations(table: str, name: str) -> list[migrations.RunSQL]:
    return [
        migrations.RunSQL(_fk_sql(table, name), f"ALTER TABLE {table} DROP CONSTRAINT {name};"),
        migrations.RunSQL(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name};", migrations.RunSQL.noop),
    ]


class Migration(migrations.Migration):
    atomic = False  # each constraint is validated in a transaction of its own (tests/test_migrations.py)

    dependencies = [("compliance", "0001_initial")]

    operations = [
        *(operation for table, name in COMPOSITE_FKS for operation in _fk_operations(table, name)),
        migrations.RunSQL(ASSIGNEE_TRIGGER, ASSIGNEE_TRIGGER_DROP),
    ]
