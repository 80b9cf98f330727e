"""Numbers with their nouns in what operators read: never "1 items" or "tenant(s)"."""

from __future__ import annotations

import pytest

from kgc.texts import counted


@pytest.mark.parametrize(
    ("count", "singular", "plural", "expected"),
    [
        (0, "tenant", None, "0 tenants"),
        (1, "tenant", None, "1 tenant"),
        (2, "tenant", None, "2 tenants"),
        (1, "failed job", None, "1 failed job"),
        (3, "company", "companies", "3 companies"),
        (1, "company", "companies", "1 company"),
    ],
)
def test_counted_puts_the_noun_in_the_right_number(count, singular, plural, expected):
    assert counted(count, singular, plural) == expected


@pytest.mark.django_db
def test_a_digest_of_one_item_says_one_item():
    from notifications.models import Digest
    from tests.factories import MembershipFactory

    member = MembershipFactory()
    digest = Digest(tenant=member.tenant, recipient=member.user, local_date="2026-12-01", cutoff="2026-12-01T09:00Z")
    digest.items_count = 1
    assert str(digest).endswith("(1 item)")
