"""The unsubscribe and preferences pages: reached by signed links, without logging in."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client

from notifications.models import NotificationPreference
from notifications.preferences import ALL_KINDS, preferences_token, unsubscribe_token
from tests.factories import TenantFactory

pytestmark = [
    pytest.mark.django_db,
    # WhiteNoise warns when collectstatic has not run (a test checkout); the pages need no static files.
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]


@pytest.fixture
def member(tenant, member_of):
    return member_of(tenant, "manager")


@pytest.fixture
def browser() -> Client:
    """A client with no session and CSRF checks on, as a mail client or a browser arrives."""
    return Client(enforce_csrf_checks=True)


def unsubscribe_url(member, tenant, kind="filing_reminder") -> str:
    return f"/notifications/unsubscribe/{unsubscribe_token(user_id=member.pk, tenant_id=tenant.pk, kind=kind)}"


def preferences_url(member, tenant) -> str:
    return f"/notifications/preferences/{preferences_token(user_id=member.pk, tenant_id=tenant.pk)}"


def chosen(member) -> dict[str, str]:
    return dict(NotificationPreference.objects.filter(user=member).values_list("kind", "email"))


# --- One-click unsubscribe --------------------------------------------------------------------


def test_one_click_post_without_login_or_csrf_turns_the_kind_off(browser, tenant, member):
    response = browser.post(unsubscribe_url(member, tenant), "List-Unsubscribe=One-Click", "text/plain")
    assert response.status_code == 200
    assert chosen(member) == {"filing_reminder": "off"}


def test_unsubscribing_twice_is_fine(browser, tenant, member):
    url = unsubscribe_url(member, tenant)
    assert [browser.post(url).status_code for _ in range(2)] == [200, 200]
    assert chosen(member) == {"filing_reminder": "off"}


def test_a_digests_link_turns_every_kind_off(browser, tenant, member):
    browser.post(unsubscribe_url(member, tenant, kind=ALL_KINDS))
    assert set(chosen(member).values()) == {"off"} and len(chosen(member)) == 4


def test_get_shows_a_button_and_changes_nothing(browser, tenant, member):
    response = browser.get(unsubscribe_url(member, tenant))
    page = response.content.decode()
    assert response.status_code == 200
    assert 'id="unsubscribe-button"' in page and "Filing reminder emails" in page and tenant.name in page
    assert chosen(member) == {}


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_tampered_token_answers_400_and_changes_nothing(browser, tenant, member, method):
    url = unsubscribe_url(member, tenant)
    tampered = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
    response = getattr(browser, method)(tampered)
    assert response.status_code == 400
    assert 'id="bad-link"' in response.content.decode()
    assert chosen(member) == {}


def test_a_token_turned_to_another_user_answers_400(browser, tenant, member, member_of):
    other = member_of(tenant, "admin")
    payload, _, signature = unsubscribe_token(user_id=member.pk, tenant_id=tenant.pk, kind="filing_reminder").partition(
        ":"
    )
    forged_payload = unsubscribe_token(user_id=other.pk, tenant_id=tenant.pk, kind="filing_reminder").partition(":")[0]
    response = browser.post(f"/notifications/unsubscribe/{forged_payload}:{signature}")
    assert response.status_code == 400
    assert not NotificationPreference.objects.exists()


def test_someone_no_longer_a_member_gets_400(browser, tenant, member_of):
    outsider = member_of(TenantFactory(), "admin")
    response = browser.post(unsubscribe_url(outsider, tenant))
    assert response.status_code == 400
    assert not NotificationPreference.objects.exists()


def test_the_pages_send_their_address_to_no_other_site_and_are_not_cached(browser, tenant, member):
    response = browser.get(unsubscribe_url(member, tenant))
    assert response["Referrer-Policy"] == "same-origin"
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


def test_after_unsubscribing_the_page_links_to_the_preferences(browser, tenant, member):
    page = browser.post(unsubscribe_url(member, tenant)).content.decode()
    link = re.search(r'href="([^"]+)" id="preferences-link"', page).group(1)
    assert browser.get(link).status_code == 200


def test_the_preferences_link_an_unsubscribe_answers_with_expires_in_minutes(browser, tenant, member):
    """The unsubscribe address is also List-Unsubscribe, which mailbox providers POST and log:
    its answer must not open every choice of the member for good."""
    with time_machine.travel(datetime(2026, 12, 1, 9, 0, tzinfo=UTC), tick=False) as clock:
        page = browser.post(unsubscribe_url(member, tenant), "List-Unsubscribe=One-Click", "text/plain")
        link = re.search(r'href="([^"]+)" id="preferences-link"', page.content.decode()).group(1)
        clock.shift(timedelta(minutes=14))
        form = {"csrfmiddlewaretoken": _csrf(browser, link), "document_expiry": "off"}
        form |= {"filing_reminder": "daily_digest", "compliance_alert": "default", "filing_escalation": "default"}
        assert browser.post(link, form).status_code == 200  # in time: it works
        clock.shift(timedelta(minutes=2))
        refused = browser.get(link)
        assert refused.status_code == 400
        assert "expired" in refused.content.decode()
        assert browser.post(link, {**form, "document_expiry": "immediate"}).status_code == 400
    assert chosen(member) == {"document_expiry": "off", "filing_reminder": "daily_digest"}


def test_the_preferences_link_of_an_email_does_not_expire(browser, tenant, member):
    with time_machine.travel(datetime(2026, 12, 1, 9, 0, tzinfo=UTC), tick=False) as clock:
        url = preferences_url(member, tenant)
        clock.shift(timedelta(days=400))
        assert browser.get(url).status_code == 200


# --- The preferences page ---------------------------------------------------------------------


def _csrf(browser, url) -> str:
    page = browser.get(url).content.decode()
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


def test_the_page_shows_each_kind_with_the_current_choice(browser, tenant, member):
    NotificationPreference.objects.create(tenant=tenant, user=member, kind="document_expiry", email="daily_digest")
    page = browser.get(preferences_url(member, tenant)).content.decode()
    assert re.search(r'name="document_expiry" value="daily_digest"[^>]*checked', page)
    assert re.search(r'name="filing_reminder" value="default"[^>]*checked', page)


def test_saving_sets_each_kind(browser, tenant, member):
    url = preferences_url(member, tenant)
    form = {
        "csrfmiddlewaretoken": _csrf(browser, url),
        "document_expiry": "daily_digest",
        "filing_reminder": "off",
        "compliance_alert": "default",
        "filing_escalation": "default",
    }
    response = browser.post(url, form)
    assert response.status_code == 200 and 'id="saved"' in response.content.decode()
    assert chosen(member) == {"document_expiry": "daily_digest", "filing_reminder": "off"}


def test_a_bad_choice_answers_400_names_it_and_saves_nothing(browser, tenant, member):
    url = preferences_url(member, tenant)
    form = {
        "csrfmiddlewaretoken": _csrf(browser, url),
        "document_expiry": "weekly",
        "filing_reminder": "off",
        "compliance_alert": "default",
        "filing_escalation": "default",
    }
    response = browser.post(url, form)
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert chosen(member) == {}


def test_the_preferences_form_keeps_its_csrf_protection(browser, tenant, member):
    form = {"document_expiry": "off", "filing_reminder": "off", "compliance_alert": "off"}
    assert browser.post(preferences_url(member, tenant), form).status_code == 403
    assert chosen(member) == {}


def test_an_unsubscribe_token_does_not_open_the_preferences_page(browser, tenant, member):
    token = unsubscribe_token(user_id=member.pk, tenant_id=tenant.pk, kind="filing_reminder")
    assert browser.get(f"/notifications/preferences/{token}").status_code == 400
