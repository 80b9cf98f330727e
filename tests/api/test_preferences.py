"""GET and PUT /api/v1/tenants/{tenantId}/users/{userId}/notification-preferences."""

from __future__ import annotations

import json

import pytest

from notifications.models import NotificationPreference
from tests.api.conftest import ApiClient
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def member(tenant, member_of):
    return member_of(tenant, "manager")


def path(tenant_id: int, user_id: int) -> str:
    return f"tenants/{tenant_id}/users/{user_id}/notification-preferences"


def put(api: ApiClient, url: str, body):
    return api.client.put(f"/api/v1/{url}", data=json.dumps(body), content_type="application/json")


def test_get_answers_every_kind_with_the_tenant_default(api, tenant, member):
    response = api.get(path(tenant.pk, member.pk))
    assert response.status_code == 200
    assert response.json() == {
        "tenantId": tenant.pk,
        "userId": member.pk,
        "tenantDefault": "immediate",
        "preferences": {
            "documentExpiry": None,
            "filingReminder": None,
            "complianceAlert": None,
            "filingEscalation": None,
        },
        "effective": {
            "documentExpiry": "immediate",
            "filingReminder": "immediate",
            "complianceAlert": "immediate",
            "filingEscalation": "immediate",
        },
    }


def test_put_changes_the_kinds_given_and_answers_the_result(api, tenant, member):
    NotificationPreference.objects.create(tenant=tenant, user=member, kind="compliance_alert", email="off")
    response = put(
        api, path(tenant.pk, member.pk), {"preferences": {"documentExpiry": "daily_digest", "complianceAlert": None}}
    )
    assert response.status_code == 200
    assert response.json()["preferences"] == {
        "documentExpiry": "daily_digest",
        "filingReminder": None,
        "complianceAlert": None,
        "filingEscalation": None,
    }
    assert list(NotificationPreference.objects.values_list("kind", "email")) == [("document_expiry", "daily_digest")]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"preferences": {"documentExpiry": "weekly"}}, "preferences.documentExpiry", "must be one of immediate"),
        ({"preferences": {"newsletter": "off"}}, "preferences.newsletter", "unknown kind"),
        ({"preferences": {"documentExpiry": 3}}, "preferences.documentExpiry", "must be a string or null"),
        ({"preferences": "off"}, "preferences", "must be an object"),
        ({}, "preferences", "is required"),
        ({"preferences": {}, "userId": 3}, "userId", "unknown field"),
    ],
)
def test_a_bad_body_answers_400_per_field_and_changes_nothing(api, tenant, member, body, field, message):
    response = put(api, path(tenant.pk, member.pk), body)
    assert response.status_code == 400
    assert response.json()["errors"][field].startswith(message)
    assert not NotificationPreference.objects.exists()


def test_one_bad_kind_sinks_the_whole_change(api, tenant, member):
    response = put(api, path(tenant.pk, member.pk), {"preferences": {"filingReminder": "off", "documentExpiry": "x"}})
    assert response.status_code == 400
    assert not NotificationPreference.objects.exists()


@pytest.mark.parametrize("who", ["unknown tenant", "unknown user", "member elsewhere", "inactive tenant", "huge id"])
def test_someone_who_is_not_a_member_of_an_active_tenant_is_404(api, tenant, member, member_of, who):
    tenant_id, user_id = tenant.pk, member.pk
    if who == "unknown tenant":
        tenant_id = tenant.pk + 1000
    elif who == "unknown user":
        user_id = member.pk + 1000
    elif who == "member elsewhere":
        user_id = member_of(TenantFactory(), "admin").pk
    elif who == "inactive tenant":
        tenant.is_active = False
        tenant.save()
    else:
        user_id = 2**70
    assert api.get(path(tenant_id, user_id)).status_code == 404
    assert put(api, path(tenant_id, user_id), {"preferences": {"documentExpiry": "off"}}).status_code == 404
    assert not NotificationPreference.objects.exists()


def test_without_a_token_the_api_refuses(db, tenant, member, api_tokens):
    response = ApiClient(None).get(path(tenant.pk, member.pk))
    assert response.status_code == 401


def test_other_methods_are_refused_with_the_allowed_ones(api, tenant, member):
    response = api.post(path(tenant.pk, member.pk), {"preferences": {}})
    assert (response.status_code, response["Allow"]) == (405, "GET, PUT")
