"""refresh_tenant_compliance: scores every active client, one row per client per day, in a
constant number of queries, and alerts on a worse level at most once a day."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from compliance.models import ComplianceScore
from compliance.services import refresh_tenant_compliance
from notifications.models import Notification, OutboundEmail
from tests.factories import FilingFactory, TenantFactory

pytestmark = pytest.mark.django_db


def refresh(tenant, as_of, triggered_by="test"):
    return refresh_tenant_compliance(tenant=tenant, as_of=as_of, triggered_by=triggered_by)


def test_scores_every_active_client_with_its_level(tenant, make_client, as_of):
    green, amber, red = (make_client(tenant, state) for state in ("green", "amber", "red"))
    result = refresh(tenant, as_of)
    scores = {s.client_id: (s.score, s.level) for s in ComplianceScore.objects.filter(calculated_on=as_of)}
    assert scores == {green.pk: (100, "green"), amber.pk: (75, "amber"), red.pk: (35, "red")}
    assert result.summary()["levels"] == {"green": 1, "amber": 1, "red": 1}


def test_inactive_clients_are_not_scored(tenant, make_client, as_of):
    make_client(tenant, is_active=False)
    assert refresh(tenant, as_of).clients_scored == 0
    assert not ComplianceScore.objects.exists()


def test_other_tenants_clients_are_left_alone(tenant, make_client, as_of):
    other = make_client(TenantFactory())
    refresh(tenant, as_of)
    assert not ComplianceScore.objects.filter(client=other).exists()


def test_stored_breakdown_explains_the_score(tenant, make_client, as_of, tin):
    client = make_client(tenant, "amber")
    refresh(tenant, as_of)
    breakdown = ComplianceScore.objects.get(client=client).breakdown
    assert [(item["reason"], item["points"]) for item in breakdown] == [("missing", 20), ("upcoming", 5)]
    assert breakdown[0]["document_type_id"] == tin.pk
    assert breakdown[1]["filing_id"] == client.filings.get().pk


def test_same_day_rerun_updates_the_row_instead_of_adding_one(tenant, make_client, as_of):
    client = make_client(tenant, "amber")
    refresh(tenant, as_of, triggered_by="schedule")
    first = ComplianceScore.objects.get(client=client)
    client.filings.all().delete()
    refresh(tenant, as_of, triggered_by="manual")
    rows = list(ComplianceScore.objects.filter(client=client))
    assert [(r.pk, r.score, r.triggered_by) for r in rows] == [(first.pk, 80, "manual")]


def test_next_day_adds_a_row(tenant, make_client, as_of):
    client = make_client(tenant)
    refresh(tenant, as_of)
    refresh(tenant, as_of + timedelta(days=1))
    assert ComplianceScore.objects.filter(client=client).count() == 2


def _queries_for(clients: int, make_client, past_score, member_of, as_of) -> int:
    tenant = TenantFactory()
    member_of(tenant, "admin")
    member_of(tenant, "compliance_officer")
    for _ in range(clients):
        # Every client drops a level, so the alert path runs for all of them.
        past_score(make_client(tenant, "amber"), "green")
    with CaptureQueriesContext(connection) as queries:
        result = refresh(tenant, as_of)
    assert result.clients_dropped == clients
    return len(queries)


def test_query_count_does_not_grow_with_the_number_of_clients(make_client, past_score, member_of, as_of):
    small = _queries_for(10, make_client, past_score, member_of, as_of)
    large = _queries_for(100, make_client, past_score, member_of, as_of)
    assert small == large


# --- Alerts -----------------------------------------------------------------------------------


@pytest.fixture
def officers(tenant, member_of):
    return [member_of(tenant, "admin"), member_of(tenant, "compliance_officer")]


@pytest.mark.parametrize(
    ("previous", "state", "alerted"),
    [
        ("green", "amber", True),
        ("amber", "red", True),
        ("green", "red", True),
        ("amber", "amber", False),
        ("red", "amber", False),
        ("amber", "green", False),
        (None, "red", False),
    ],
)
def test_alerts_only_when_the_level_gets_worse(
    tenant, officers, make_client, past_score, as_of, previous, state, alerted
):
    client = make_client(tenant, state)
    if previous:
        past_score(client, previous)
    result = refresh(tenant, as_of)
    assert (result.alerts > 0, Notification.objects.exists()) == (alerted, alerted)


def test_compares_with_the_latest_earlier_score(tenant, officers, make_client, past_score, as_of):
    client = make_client(tenant, "amber")
    past_score(client, "green", days_ago=5)
    past_score(client, "amber", days_ago=1)
    assert refresh(tenant, as_of).alerts == 0


def test_alert_reaches_active_admins_and_compliance_officers_only(
    tenant, officers, member_of, make_client, past_score, as_of
):
    member_of(tenant, "manager")
    member_of(tenant, "viewer")
    member_of(tenant, "admin", is_active=False)
    member_of(TenantFactory(), "admin")
    past_score(make_client(tenant, "red"), "green")
    refresh(tenant, as_of)
    assert sorted(Notification.objects.values_list("recipient_id", flat=True)) == sorted(u.pk for u in officers)


def test_alert_carries_the_seed_example_fields(tenant, officers, make_client, past_score, as_of):
    client = make_client(tenant, "amber", name="ACME Corp")
    past_score(client, "green")
    refresh(tenant, as_of)
    notification = Notification.objects.filter(recipient=officers[0]).get()
    email = OutboundEmail.objects.get(notification=notification)
    assert notification.kind == "compliance_alert"
    assert (email.template, email.to_email) == ("compliance-alert", officers[0].email)
    assert email.context == notification.data
    assert {k: notification.data[k] for k in ("clientId", "tenantId", "clientName", "complianceScore")} == {
        "clientId": client.pk,
        "tenantId": tenant.pk,
        "clientName": "ACME Corp",
        "complianceScore": 75,
    }
    assert notification.data["complianceLevel"] == "amber"
    assert notification.data["issues"] == [
        "Missing TIN Certificate",
        f"VAT Return 2026-10 due on {as_of + timedelta(days=3)}",
    ]
    assert notification.data["recommendations"][0] == "Upload TIN Certificate"


def test_alert_email_is_queued_for_sending(tenant, officers, make_client, past_score, as_of):
    past_score(make_client(tenant, "red"), "green")
    refresh(tenant, as_of)
    assert OutboundEmail.objects.filter(status="queued").count() == len(officers)


def test_at_most_one_alert_per_client_per_day_whatever_the_runs(tenant, officers, make_client, past_score, as_of):
    past_score(make_client(tenant, "red"), "green")
    first = refresh(tenant, as_of)
    second = refresh(tenant, as_of)
    assert (first.alerts, second.alerts, Notification.objects.count()) == (2, 0, 2)
    assert OutboundEmail.objects.count() == 2


def test_a_new_drop_on_a_later_day_alerts_again(tenant, officers, make_client, past_score, as_of, tin):
    client = make_client(tenant, "amber")
    past_score(client, "green")
    refresh(tenant, as_of)  # green → amber: alert
    client.filings.all().delete()
    client.documents.create(tenant=tenant, document_type=tin, title="TIN")
    refresh(tenant, as_of + timedelta(days=1))  # back to green
    client.documents.all().delete()
    FilingFactory(client=client, due_date=as_of, status="draft")
    result = refresh(tenant, as_of + timedelta(days=2))  # green → amber (60) again
    assert (result.alerts, Notification.objects.count()) == (2, 4)


def test_alert_to_a_person_with_the_longest_names_fits_the_email_columns(
    tenant, member_of, make_client, past_score, as_of
):
    member_of(tenant, "admin", first_name="F" * 150, last_name="L" * 150)  # 301 characters in all
    past_score(make_client(tenant, "red", name="C" * 200), "green")
    assert refresh(tenant, as_of).alerts == 1
    to_name = OutboundEmail.objects.get().to_name
    assert (len(to_name), to_name[-1]) == (200, "…")
