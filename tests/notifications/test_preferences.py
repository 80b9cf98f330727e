"""Email preferences: the routing rule (pure), the signed link tokens, reading and changing choices."""

from __future__ import annotations

import pytest

from compliance.models import Membership
from notifications.exceptions import InvalidLinkToken, InvalidPreferences, UnknownMember
from notifications.models import NotificationPreference
from notifications.preferences import (
    ALL_KINDS,
    LinkSubject,
    email_links,
    email_preference_effective,
    email_route,
    notification_preferences_get,
    notification_preferences_set,
    preferences_token,
    preferences_token_read,
    unsubscribe_apply,
    unsubscribe_token,
    unsubscribe_token_read,
)
from tests.factories import TenantFactory

# --- The rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("preference", "urgency", "has_address", "suppressed", "route"),
    [
        ("immediate", "NORMAL", True, False, "queued"),
        ("immediate", "URGENT", True, False, "queued"),
        ("daily_digest", "NORMAL", True, False, "digest_pending"),
        ("daily_digest", "HIGH", True, False, "digest_pending"),
        ("daily_digest", None, True, False, "digest_pending"),
        ("daily_digest", "URGENT", True, False, "queued"),  # urgent: emailed at once even to digest readers
        ("off", "NORMAL", True, False, "opted_out"),
        ("off", "URGENT", True, False, "opted_out"),  # ... unless they chose off
        ("immediate", "NORMAL", True, True, "suppressed"),
        ("daily_digest", "NORMAL", True, True, "suppressed"),
        ("off", "NORMAL", True, True, "opted_out"),
        ("immediate", "NORMAL", False, False, "skipped"),
        ("off", "NORMAL", False, False, "skipped"),
    ],
)
def test_email_route(preference, urgency, has_address, suppressed, route):
    assert email_route(preference=preference, urgency=urgency, has_address=has_address, suppressed=suppressed) == route


@pytest.mark.parametrize(
    ("chosen", "tenant_default", "effective"),
    [
        (None, "immediate", "immediate"),
        (None, "daily_digest", "daily_digest"),
        ("off", "daily_digest", "off"),
        ("immediate", "daily_digest", "immediate"),
        ("daily_digest", "immediate", "daily_digest"),
    ],
)
def test_a_choice_wins_over_the_tenant_default(chosen, tenant_default, effective):
    assert email_preference_effective(chosen=chosen, tenant_default=tenant_default) == effective


# --- Tokens ---------------------------------------------------------------------------------


def test_unsubscribe_token_names_its_user_tenant_and_kind():
    token = unsubscribe_token(user_id=7, tenant_id=3, kind="filing_reminder")
    assert unsubscribe_token_read(token) == LinkSubject(user_id=7, tenant_id=3, kind="filing_reminder")


def _tampered(token: str, old: str, new: str) -> str:
    payload, _, signature = token.partition(":")
    import base64
    import json

    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data[old] = new
    forged = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")
    return f"{forged}:{signature}"


@pytest.mark.parametrize(("field", "value"), [("u", 8), ("t", 4), ("k", "compliance_alert")])
def test_a_token_turned_to_another_user_tenant_or_kind_is_refused(field, value):
    token = unsubscribe_token(user_id=7, tenant_id=3, kind="filing_reminder")
    with pytest.raises(InvalidLinkToken):
        unsubscribe_token_read(_tampered(token, field, value))


@pytest.mark.parametrize("token", ["", "garbage", "eyJ1Ijo3fQ:forged", "a:b:c"])
def test_a_malformed_or_forged_token_is_refused(token):
    with pytest.raises(InvalidLinkToken):
        unsubscribe_token_read(token)


def test_a_preferences_token_is_no_unsubscribe_token():
    # Each kind of link has its own salt: one cannot stand in for the other.
    with pytest.raises(InvalidLinkToken):
        unsubscribe_token_read(preferences_token(user_id=7, tenant_id=3))
    assert preferences_token_read(preferences_token(user_id=7, tenant_id=3)) == LinkSubject(user_id=7, tenant_id=3)


def test_no_links_without_a_public_url():
    assert email_links(public_url="", user_id=7, tenant_id=3, kind="document_expiry") is None


def test_links_point_under_the_public_url():
    links = email_links(public_url="https://jobs.example.com/", user_id=7, tenant_id=3, kind=ALL_KINDS)
    assert links is not None
    assert links.unsubscribe_url.startswith("https://jobs.example.com/notifications/unsubscribe/")
    assert links.preferences_url.startswith("https://jobs.example.com/notifications/preferences/")
    assert links.unsubscribe_what == "all notification emails"


# --- Reading and changing choices -------------------------------------------------------------


@pytest.mark.django_db
def test_without_choices_every_kind_follows_the_tenant_default(tenant, member_of):
    tenant.notification_email_default = "daily_digest"
    tenant.save()
    user = member_of(tenant, "manager")
    preferences = notification_preferences_get(tenant=tenant, user_id=user.pk)
    assert preferences.chosen == {
        "document_expiry": None,
        "filing_reminder": None,
        "compliance_alert": None,
        "filing_escalation": None,
    }
    assert set(preferences.effective.values()) == {"daily_digest"}


@pytest.mark.django_db
def test_set_changes_the_kinds_given_and_null_goes_back_to_the_default(tenant, member_of):
    user = member_of(tenant, "manager")
    notification_preferences_set(tenant=tenant, user_id=user.pk, changes={"document_expiry": "off"})
    preferences = notification_preferences_set(
        tenant=tenant, user_id=user.pk, changes={"filing_reminder": "daily_digest", "document_expiry": None}
    )
    assert preferences.chosen == {
        "document_expiry": None,
        "filing_reminder": "daily_digest",
        "compliance_alert": None,
        "filing_escalation": None,
    }
    assert NotificationPreference.objects.count() == 1


@pytest.mark.django_db
def test_set_refuses_unknown_kinds_and_values_and_changes_nothing(tenant, member_of):
    user = member_of(tenant, "manager")
    with pytest.raises(InvalidPreferences) as refused:
        notification_preferences_set(
            tenant=tenant, user_id=user.pk, changes={"document_expiry": "weekly", "newsletter": "off"}
        )
    assert set(refused.value.errors) == {"document_expiry", "newsletter"}
    assert not NotificationPreference.objects.exists()


@pytest.mark.django_db
def test_someone_who_is_not_a_member_has_no_preferences_here(tenant, member_of):
    outsider = member_of(TenantFactory(), "admin")
    with pytest.raises(UnknownMember):
        notification_preferences_set(tenant=tenant, user_id=outsider.pk, changes={"document_expiry": "off"})
    assert not NotificationPreference.objects.exists()


@pytest.mark.django_db
def test_choices_go_with_the_membership(tenant, member_of):
    user = member_of(tenant, "manager")
    notification_preferences_set(tenant=tenant, user_id=user.pk, changes={"document_expiry": "off"})
    Membership.objects.filter(tenant=tenant, user=user).delete()
    assert not NotificationPreference.objects.exists()


@pytest.mark.django_db
def test_unsubscribe_from_a_digest_turns_every_kind_off(tenant, member_of):
    user = member_of(tenant, "manager")
    unsubscribe_apply(subject=LinkSubject(user_id=user.pk, tenant_id=tenant.pk, kind=ALL_KINDS))
    assert set(notification_preferences_get(tenant=tenant, user_id=user.pk).effective.values()) == {"off"}
