from __future__ import annotations

import pytest

from compliance.exceptions import UnknownTenant
from compliance.selectors import tenant_get
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


def test_tenant_is_found_by_id_or_slug():
    tenant = TenantFactory(slug="kestrel")
    assert tenant_get(tenant.pk) == tenant_get(str(tenant.pk)) == tenant_get("kestrel") == tenant


def test_all_digit_slug_wins_over_an_id():
    other = TenantFactory()
    named_like_an_id = TenantFactory(slug=str(other.pk))
    assert tenant_get(str(other.pk)) == named_like_an_id
    assert tenant_get(other.pk) == other


def test_inactive_or_unknown_tenant_is_refused():
    inactive = TenantFactory(is_active=False)
    with pytest.raises(UnknownTenant):
        tenant_get(inactive.pk)
    with pytest.raises(UnknownTenant, match="'nope'"):
        tenant_get("nope")
    assert tenant_get(inactive.pk, active_only=False) == inactive
