"""The compliance score counts a filing overdue from its effective due date, as reminders and escalations do."""

from __future__ import annotations

from datetime import date

import pytest

from compliance.models import ComplianceScore
from compliance.services import refresh_tenant_compliance
from tests.factories import ClientFactory, FilingFactory, TenantFactory

pytestmark = pytest.mark.django_db

SATURDAY = date(2026, 5, 16)


def reasons(tenant, as_of) -> list[str]:
    refresh_tenant_compliance(tenant=tenant, as_of=as_of, triggered_by="test")
    return [item["reason"] for item in ComplianceScore.objects.get(calculated_on=as_of).breakdown]


@pytest.mark.parametrize(
    ("country", "sunday", "tuesday"), [("US", ["upcoming"], ["overdue"]), ("", ["overdue"], ["overdue"])]
)
def test_a_saturday_due_filing_is_not_overdue_before_the_next_business_day(country, sunday, tuesday):
    tenant = TenantFactory(holiday_country=country)
    FilingFactory(client=ClientFactory(tenant=tenant), due_date=SATURDAY)
    assert reasons(tenant, date(2026, 5, 17)) == sunday
    assert reasons(tenant, date(2026, 5, 19)) == tuesday
