"""GET and PUT /api/v1/tenants/{tenantId}/reminder-settings: a firm's thresholds and holiday calendar."""

from __future__ import annotations

import json

import pytest

from compliance.models import Tenant
from tests.api.conftest import ApiClient

pytestmark = pytest.mark.django_db


def path(tenant_id: int) -> str:
    return f"tenants/{tenant_id}/reminder-settings"


def put(api: ApiClient, tenant_id: int, body):
    return api.client.put(f"/api/v1/{path(tenant_id)}", data=json.dumps(body), content_type="application/json")


def test_get_answers_the_defaults_of_a_firm_without_its_own(api, tenant):
    response = api.get(path(tenant.pk))
    assert response.status_code == 200
    assert response.json() == {
        "tenantId": tenant.pk,
        "expiryReminderDays": None,
        "filingReminderDays": None,
        "holidayCountry": "",
        "holidaySubdivision": "",
        "effective": {"expiryReminderDays": [30, 14, 7], "filingReminderDays": [14, 7, 3]},
    }


def test_put_sets_the_fields_given_largest_first_and_keeps_the_others(api, tenant):
    put(api, tenant.pk, {"holidayCountry": "us", "holidaySubdivision": "dc"})
    response = put(api, tenant.pk, {"expiryReminderDays": [7, 60, 21]})
    assert response.status_code == 200
    body = response.json()
    assert (body["expiryReminderDays"], body["holidayCountry"], body["holidaySubdivision"]) == ([60, 21, 7], "US", "DC")
    tenant.refresh_from_db()
    assert (tenant.expiry_reminder_days, tenant.filing_reminder_days, tenant.holiday_country) == (
        [60, 21, 7],
        None,
        "US",
    )


def test_null_puts_thresholds_back_on_the_default(api, tenant):
    put(api, tenant.pk, {"filingReminderDays": [10, 2]})
    assert put(api, tenant.pk, {"filingReminderDays": None}).json()["effective"]["filingReminderDays"] == [14, 7, 3]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"expiryReminderDays": [30, 400]}, "expiryReminderDays", "from 0 to 365, got 400"),
        ({"expiryReminderDays": []}, "expiryReminderDays", "at least one"),
        ({"filingReminderDays": [7, 7]}, "filingReminderDays", "must not repeat"),
        ({"filingReminderDays": [1, 2, 3, 4, 5, 6, 7]}, "filingReminderDays", "at most 6"),
        ({"filingReminderDays": ["7"]}, "filingReminderDays", "whole numbers"),
        ({"filingReminderDays": 7}, "filingReminderDays", "must be a list"),
        ({"holidayCountry": "XX"}, "holidayCountry", "not a country code"),
        ({"holidayCountry": "US", "holidaySubdivision": "ZZ"}, "holidaySubdivision", "not a subdivision of US"),
        ({"holidaySubdivision": "DC"}, "holidaySubdivision", "needs a country"),
        ({"holidayCountry": 5}, "holidayCountry", "must be a string"),
        ({"weekendDays": [6]}, "weekendDays", "unknown field"),
    ],
)
def test_a_bad_value_is_a_400_naming_its_field_and_nothing_changes(api, tenant, body, field, words):
    response = put(api, tenant.pk, {"filingReminderDays": [5], **body} if field != "filingReminderDays" else body)
    assert response.status_code == 400
    assert words in response.json()["errors"][field]
    tenant.refresh_from_db()
    assert (tenant.filing_reminder_days, tenant.expiry_reminder_days, tenant.holiday_country) == (None, None, "")


def test_several_bad_fields_are_named_at_once(api, tenant):
    errors = put(api, tenant.pk, {"expiryReminderDays": [-1], "holidayCountry": "ZZ"}).json()["errors"]
    assert set(errors) == {"expiryReminderDays", "holidayCountry"}


def test_an_empty_body_is_a_400(api, tenant):
    assert put(api, tenant.pk, {}).status_code == 400


def test_an_unknown_or_inactive_tenant_is_a_404(api, tenant):
    Tenant.objects.filter(pk=tenant.pk).update(is_active=False)
    assert api.get(path(tenant.pk)).status_code == 404
    assert api.get(path(2**63 + 5)).status_code == 404
