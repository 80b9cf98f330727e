"""seed_demo writes the same data for the same arguments, and only once."""

from __future__ import annotations

import hashlib
from datetime import date

import pytest
from django.core.management import call_command

from compliance.models import Client, Document, Filing, FilingTask, Membership, Requirement, Tenant
from tests.helpers import manage

pytestmark = pytest.mark.django_db
ARGS = [
    "--tenants",
    "3",
    "--clients-per-tenant",
    "5",
    "--documents-per-client",
    "4",
    "--seed",
    "7",
    "--as-of",
    "2026-11-29",
]


def demo_digest() -> str:
    """A fingerprint of the demo data without database ids or timestamps."""
    rows = [
        *Tenant.objects.order_by("slug").values_list("slug", "name", "timezone"),
        *Membership.objects.order_by("user__username").values_list(
            "tenant__slug", "user__username", "user__email", "role"
        ),
        *Client.objects.order_by("tenant__slug", "name").values_list("tenant__slug", "name", "is_active"),
        *Requirement.objects.order_by("client__name", "document_type__code").values_list(
            "client__name", "document_type__code"
        ),
        *Document.objects.order_by("client__name", "document_type__code", "expires_on").values_list(
            "client__name", "document_type__code", "title", "expires_on"
        ),
        *Filing.objects.order_by("client__name", "filing_type").values_list(
            "client__name", "filing_type", "due_date", "status"
        ),
        *FilingTask.objects.order_by("filing__client__name", "filing__filing_type").values_list(
            "filing__client__name", "assignee__username", "is_done"
        ),
    ]
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def test_same_arguments_write_the_same_data():
    call_command("seed_demo", *ARGS, verbosity=0)
    first = demo_digest()
    Tenant.objects.all().delete()
    call_command("seed_demo", *ARGS, verbosity=0)
    assert demo_digest() == first


def test_another_seed_writes_other_data():
    call_command("seed_demo", *ARGS, verbosity=0)
    first = demo_digest()
    Tenant.objects.all().delete()
    call_command("seed_demo", *ARGS[:-4], "--seed", "8", "--as-of", "2026-11-29", verbosity=0)
    assert demo_digest() != first


def test_second_run_adds_nothing():
    call_command("seed_demo", *ARGS, verbosity=0)
    counts = [model.objects.count() for model in (Tenant, Client, Document, Filing, FilingTask, Membership)]
    call_command("seed_demo", *ARGS, verbosity=0)
    assert [model.objects.count() for model in (Tenant, Client, Document, Filing, FilingTask, Membership)] == counts


def test_demo_data_covers_every_role_and_document_state():
    call_command("seed_demo", *ARGS, verbosity=0)
    as_of = date(2026, 11, 29)
    assert set(Membership.objects.values_list("role", flat=True)) == set(Membership.Role.values)
    documents = Document.objects.all()
    assert documents.filter(expires_on__lt=as_of).exists()
    assert documents.filter(expires_on__range=(as_of, date(2027, 1, 28))).exists()
    assert documents.filter(expires_on__gt=date(2027, 1, 28)).exists()
    assert documents.filter(expires_on__isnull=True).exists()
    assert set(Filing.objects.values_list("status", flat=True)) == set(Filing.Status.values)
    assert Document.objects.count() == 3 * 5 * 4


def test_bad_argument_exits_with_code_2_and_one_line():
    result = manage("seed_demo", "--tenants", "0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith("argument --tenants: must be at least 1, got 0")


def test_demo_firms_read_daily_digests_and_some_members_choose_otherwise():
    from notifications.models import NotificationPreference

    call_command("seed_demo", *ARGS, verbosity=0)
    assert set(Tenant.objects.values_list("notification_email_default", flat=True)) == {"daily_digest"}
    chosen = set(NotificationPreference.objects.values_list("user__username", "kind", "email"))
    assert ("demo-0001-admin-1", "compliance_alert", "immediate") in chosen
    assert ("demo-0001-manager-2", "document_expiry", "off") in chosen


def test_the_first_morning_of_make_runs_demo_queues_a_few_minutes_of_email_at_the_limit():
    """``make run`` seeds 20 firms of 25 clients; the workers then run each firm's morning checks.
    The emails that go at once must keep the email queue's rate limit busy (it shows on the
    dashboard, working) but drain within a few minutes, far from the 15 minutes at which the
    dashboard turns red and the backlog alert fires: each firm's other reminders wait for its
    members' daily digest."""
    from kgc.queues import EMAIL, rate_limits
    from notifications.models import OutboundEmail
    from notifications.reminders import expiry_reminders_send, filing_escalations_send, filing_reminders_send

    as_of = date(2026, 11, 29)
    call_command(
        "seed_demo", "--tenants", "20", "--clients-per-tenant", "25", "--as-of", as_of.isoformat(), verbosity=0
    )
    for tenant in Tenant.objects.all():  # every firm's morning at once: the worst first run
        for send in (expiry_reminders_send, filing_reminders_send, filing_escalations_send):
            send(tenant=tenant, as_of=as_of)
    limit = rate_limits()[EMAIL]
    per_minute = limit.limit * (60 / limit.per.total_seconds())
    immediate = OutboundEmail.objects.count()
    assert per_minute < immediate <= 3 * per_minute  # over a minute's worth, drained within three


def test_some_tenants_have_a_holiday_calendar_own_thresholds_and_overdue_filings():
    call_command("seed_demo", "--tenants", "10", "--clients-per-tenant", "5", "--as-of", "2026-11-29", verbosity=0)
    calendars = dict(Tenant.objects.values_list("slug", "holiday_country"))
    zones = dict(Tenant.objects.values_list("slug", "timezone"))
    # Every firm outside UTC has its country's calendar, except every fourth (no rolling there).
    assert {slug for slug, country in calendars.items() if country} == {
        slug for slug, zone in zones.items() if zone != "UTC" and int(slug[-4:]) % 4
    }
    assert any(calendars.values())
    assert Tenant.objects.get(slug="demo-0005").expiry_reminder_days == [60, 30, 7]
    open_past_due = Filing.objects.filter(due_date__lt=date(2026, 11, 29), status__in=["draft", "prepared", "rejected"])
    assert open_past_due.exists()  # escalated on the first morning
