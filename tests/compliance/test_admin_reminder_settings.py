"""A firm's thresholds and holiday calendar in the admin: form errors that name the field, and
a filing's page showing the business day it is effectively due."""

from __future__ import annotations

from datetime import date

import pytest
from django.urls import reverse

from compliance.models import Tenant
from tests.factories import FilingFactory, TenantFactory

pytestmark = pytest.mark.django_db


def _post(admin_client, tenant: Tenant, **fields: str):
    data = {
        "name": tenant.name,
        "slug": tenant.slug,
        "timezone": tenant.timezone,
        "is_active": "on",
        "notification_email_default": tenant.notification_email_default,
        "expiry_reminder_days": "",
        "filing_reminder_days": "",
        "holiday_country": "",
        "holiday_subdivision": "",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        **fields,
    }
    return admin_client.post(reverse("admin:compliance_tenant_change", args=[tenant.pk]), data)


def test_thresholds_and_calendar_are_saved_largest_first_in_upper_case(admin_client):
    tenant = TenantFactory()
    response = _post(
        admin_client, tenant, expiry_reminder_days="7,60,21", holiday_country="us", holiday_subdivision="dc"
    )
    assert response.status_code == 302
    tenant.refresh_from_db()
    assert (tenant.expiry_reminder_days, tenant.filing_reminder_days) == ([60, 21, 7], None)
    assert (tenant.holiday_country, tenant.holiday_subdivision) == ("US", "DC")


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"expiry_reminder_days": "30,400"}, "each number of days must be from 0 to 365, got 400"),
        ({"filing_reminder_days": "7,7"}, "must not repeat a number of days"),
        ({"filing_reminder_days": "1,2,3,4,5,6,7"}, "may hold at most 6 numbers of days"),
        ({"holiday_country": "XX"}, "is not a country code the holidays calendar knows"),
        ({"holiday_country": "US", "holiday_subdivision": "ZZ"}, "is not a subdivision of US"),
    ],
)
def test_a_bad_value_is_a_form_error_and_nothing_is_saved(admin_client, fields, error):
    tenant = TenantFactory()
    response = _post(admin_client, tenant, **fields)
    assert response.status_code == 200
    field = next(iter(fields)) if "holiday_subdivision" not in fields else "holiday_subdivision"
    assert error in " ".join(response.context["adminform"].form.errors[field])
    tenant.refresh_from_db()
    assert (tenant.expiry_reminder_days, tenant.filing_reminder_days, tenant.holiday_country) == (None, None, "")


def test_the_tenant_list_shows_each_calendar(admin_client):
    TenantFactory(name="Capitol Tax", holiday_country="US", holiday_subdivision="DC")
    assert "US-DC" in admin_client.get(reverse("admin:compliance_tenant_changelist")).content.decode()


def test_a_filings_page_shows_when_it_is_effectively_due(admin_client):
    tenant = TenantFactory(holiday_country="US", holiday_subdivision="DC")
    filing = FilingFactory(client__tenant=tenant, due_date=date(2023, 4, 15))  # a Saturday
    page = admin_client.get(reverse("admin:compliance_filing_change", args=[filing.pk])).content.decode()
    assert "Tuesday 18 April 2023 (moved from Saturday 15 April: weekend, Emancipation Day)" in page
