"""Tenant boundaries and tenant time zones: each firm gets its own reminders, on its own date."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from procrastinate.contrib.django.models import ProcrastinateJob

from compliance.models import Document, Filing
from notifications import tasks
from notifications.models import Notification, OutboundEmail
from notifications.reminders import expiry_reminders_send, filing_reminders_send
from tests.factories import ClientFactory, DocumentFactory, DocumentTypeFactory, FilingFactory, TenantFactory
from tests.notifications.reminders.conftest import AS_OF

pytestmark = pytest.mark.django_db

SHARED_EMAIL = "pat.kim@shared.example"


@pytest.fixture
def twin_tenants(member_of):
    """Two firms with the same client name, document, due date and a staff member with the same email."""
    tin = DocumentTypeFactory(code="tin-certificate", name="TIN Certificate")
    twins = []
    for number in (1, 2):
        tenant = TenantFactory(name=f"Twin Firm {number}")
        member_of(tenant, "admin")
        shared = member_of(tenant, "compliance_officer", email=SHARED_EMAIL)
        client = ClientFactory(tenant=tenant, name="Acme Holdings")
        DocumentFactory(tenant=tenant, client=client, document_type=tin, expires_on=date(2026, 12, 13))
        FilingFactory(tenant=tenant, client=client, due_date=date(2026, 12, 2), period="2026-11")
        twins.append((tenant, shared))
    return twins


def _send_all(tenants):
    for tenant in tenants:
        expiry_reminders_send(tenant=tenant, as_of=AS_OF)
        filing_reminders_send(tenant=tenant, as_of=AS_OF)


def test_notifications_stay_within_their_tenant(twin_tenants):
    _send_all([tenant for tenant, _ in twin_tenants])
    for tenant, _ in twin_tenants:
        members = set(tenant.memberships.values_list("user_id", flat=True))
        documents = set(Document.objects.filter(tenant=tenant).values_list("pk", flat=True))
        filings = set(Filing.objects.filter(tenant=tenant).values_list("pk", flat=True))
        clients = set(tenant.clients.values_list("pk", flat=True))
        notifications = Notification.objects.filter(tenant=tenant)
        assert notifications.count() == 4  # two staff, each told of one document and one filing
        for notification in notifications:
            assert notification.recipient_id in members
            assert notification.data["clientId"] in clients
            assert notification.data["tenantName"] == tenant.name
            if notification.kind == "document_expiry":
                assert notification.data["documentId"] in documents
            else:
                assert notification.data["filingId"] in filings


def test_same_email_address_gets_each_firms_reminders_once_from_that_firm(twin_tenants):
    _send_all([tenant for tenant, _ in twin_tenants])
    for tenant, shared in twin_tenants:
        emails = OutboundEmail.objects.filter(to_email=SHARED_EMAIL, tenant=tenant)
        assert emails.count() == 2  # one expiry, one filing reminder
        for email in emails:
            assert email.notification.recipient_id == shared.pk
            assert email.notification.tenant_id == tenant.pk
            assert email.context["tenantName"] == tenant.name


def test_one_tenants_run_sends_nothing_to_the_other(twin_tenants):
    (first, _), (second, twin_in_second) = twin_tenants
    _send_all([first])
    assert Notification.objects.exclude(tenant=first).count() == 0
    assert not Notification.objects.filter(recipient=twin_in_second).exists()
    assert not OutboundEmail.objects.filter(tenant=second).exists()


def test_member_of_two_firms_is_reminded_only_by_the_firm_where_their_role_counts(member_of):
    office, branch = TenantFactory(), TenantFactory()
    person = member_of(office, "admin")
    branch.memberships.create(user=person, role="viewer")
    for tenant in (office, branch):
        DocumentFactory(tenant=tenant, client=ClientFactory(tenant=tenant), expires_on=date(2026, 12, 13))
        expiry_reminders_send(tenant=tenant, as_of=AS_OF)
    assert list(Notification.objects.values_list("tenant_id", flat=True)) == [office.pk]


# 08:00 UTC on 29 November 2026 is 21:00 on the 29th in Apia (UTC+13)
# and 21:00 on the 28th in Pago Pago (UTC-11).
TICK = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


@pytest.fixture
def date_line_tenants(member_of):
    apia = TenantFactory(slug="apia", timezone="Pacific/Apia")
    pago = TenantFactory(slug="pago-pago", timezone="Pacific/Pago_Pago")
    for tenant in (apia, pago):
        member_of(tenant, "admin")
    return apia, pago


def _run_fanned_out(fan_out, task, task_name):
    fan_out(timestamp=int(TICK.timestamp()))
    as_of_by_tenant = {}
    for job in ProcrastinateJob.objects.filter(task_name=task_name).order_by("pk"):
        as_of_by_tenant[job.args["tenant_id"]] = job.args["as_of"]
        task(**job.args)
    return as_of_by_tenant


def _thresholds_by_tenant(kind):
    found: dict[int, list[tuple[int, int]]] = {}
    for tenant_id, data, key in Notification.objects.filter(kind=kind).values_list("tenant_id", "data", "dedupe_key"):
        found.setdefault(tenant_id, []).append((data["daysLeft"], int(key.split(":")[2])))
    return {tenant_id: sorted(pairs) for tenant_id, pairs in found.items()}


def test_expiry_tick_uses_each_tenants_local_date_at_the_date_line(date_line_tenants):
    apia, pago = date_line_tenants
    for tenant in (apia, pago):
        client = ClientFactory(tenant=tenant, name="Acme Holdings")
        DocumentFactory(tenant=tenant, client=client, expires_on=date(2026, 12, 29))
        DocumentFactory(tenant=tenant, client=client, expires_on=date(2026, 12, 6))
    as_of = _run_fanned_out(tasks.check_expiry_all, tasks.check_expiry, "notifications.check_expiry")
    assert as_of == {apia.pk: "2026-11-29", pago.pk: "2026-11-28"}
    assert _thresholds_by_tenant("document_expiry") == {
        apia.pk: [(7, 7), (30, 30)],  # 29 December is 30 days away in Apia
        pago.pk: [(8, 14)],  # and 31 days away in Pago Pago: no 30-day reminder yet
    }


def test_filing_tick_uses_each_tenants_local_date_at_the_date_line(date_line_tenants):
    apia, pago = date_line_tenants
    for tenant in (apia, pago):
        FilingFactory(tenant=tenant, client=ClientFactory(tenant=tenant), due_date=date(2026, 12, 2))
    _run_fanned_out(tasks.send_filing_reminders_all, tasks.send_filing_reminders, "notifications.send_filing_reminders")
    urgency = dict(Notification.objects.values_list("tenant_id", "urgency"))
    assert urgency == {apia.pk: "URGENT", pago.pk: "HIGH"}  # 3 days left in Apia, 4 in Pago Pago
