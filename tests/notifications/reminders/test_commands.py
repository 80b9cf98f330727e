"""``manage.py check_expiry`` and ``manage.py send_filing_reminders``."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from notifications.models import Notification, OutboundEmail
from tests.factories import TenantFactory
from tests.helpers import manage
from tests.notifications.reminders.conftest import AS_OF


def run(command: str, *args: str) -> str:
    out = StringIO()
    call_command(command, *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.mark.django_db
def test_dry_run_prints_who_would_be_told_what_and_writes_nothing(tenant, member_of, document_expiring):
    member_of(tenant, "admin", email="ana@firm.example", first_name="Ana", last_name="Otieno")
    document = document_expiring(tenant, 14)
    out = run("check_expiry", "--tenant", tenant.slug, "--as-of", AS_OF.isoformat(), "--dry-run")
    assert f"Ana Otieno <ana@firm.example> (admin) ← [NORMAL] TIN Certificate for {document.client.name}" in out
    assert "Dry run: 1 document-expiry notifications due, 0 of them already sent, 1 to be sent" in out
    assert Notification.objects.count() == OutboundEmail.objects.count() == 0


@pytest.mark.django_db
def test_dry_run_counts_the_reminders_already_sent_apart(tenant, member_of, document_expiring):
    member_of(tenant, "admin")
    member_of(tenant, "manager")
    document_expiring(tenant, 14)
    run("check_expiry", "--tenant", tenant.slug, "--as-of", AS_OF.isoformat())
    member_of(tenant, "compliance_officer")
    out = run("check_expiry", "--tenant", tenant.slug, "--as-of", AS_OF.isoformat(), "--dry-run")
    assert out.splitlines()[-1] == (
        "Dry run: 3 document-expiry notifications due, 2 of them already sent, 1 to be sent; nothing was written"
    )


@pytest.mark.django_db
def test_run_prints_what_it_created(tenant, staff, filing_due):
    filing_due(tenant, 3)
    out = run("send_filing_reminders", "--tenant", str(tenant.pk), "--as-of", AS_OF.isoformat())
    assert "for 1 tenant on 2026-11-29: 4 notifications and 4 emails created, 0 already sent" in out
    assert Notification.objects.count() == 4


@pytest.mark.django_db
def test_without_tenant_every_active_tenant_is_run(member_of, document_expiring):
    tenants = [TenantFactory(), TenantFactory(), TenantFactory(is_active=False)]
    for tenant in tenants:
        member_of(tenant, "admin")
        document_expiring(tenant, 7)
    out = run("check_expiry", "--as-of", AS_OF.isoformat())
    assert "for 2 tenants" in out
    assert set(Notification.objects.values_list("tenant_id", flat=True)) == {tenants[0].pk, tenants[1].pk}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("check_expiry", ["--tenant", "no-such-firm"], "no tenant with slug 'no-such-firm'"),
        ("send_filing_reminders", ["--as-of", "2026-02-30"], "expected a date as YYYY-MM-DD, got '2026-02-30'"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_code_2(command, args, message):
    result = manage(command, *args)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert message in line
