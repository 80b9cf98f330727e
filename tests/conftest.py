from __future__ import annotations

import pytest

from tests.factories import MembershipFactory, TenantFactory


@pytest.fixture
def tenant(db):
    return TenantFactory()


@pytest.fixture
def member_of(db):
    """``member_of(tenant, role)`` creates a user with that role in that tenant."""

    def make(tenant, role="admin", **user_fields):
        return MembershipFactory(tenant=tenant, role=role, **({"user__" + k: v for k, v in user_fields.items()})).user

    return make
