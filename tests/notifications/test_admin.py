"""Preferences, digests and suppressions in the admin (outbound emails: tests/notifications/email/test_admin.py)."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from notifications.admin import NO_APP_URL, NO_PUBLIC_URL
from notifications.digests import digests_send
from notifications.models import NotificationPreference, Suppression
from tests.factories import TenantFactory
from tests.notifications.digests.conftest import document_draft, filing_draft

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.mark.parametrize("page", ["notifications_notificationpreference", "notifications_outboundemail"])
def test_without_a_public_url_the_admin_says_why_emails_have_no_unsubscribe_links(admin_client, settings, page):
    settings.KGC_PUBLIC_URL = ""
    assert NO_PUBLIC_URL in messages_of(admin_client.get(reverse(f"admin:{page}_changelist")))


def test_without_an_app_url_the_admin_says_why_emails_have_no_item_links(admin_client, settings):
    settings.KGC_APP_URL = ""
    response = admin_client.get(reverse("admin:notifications_outboundemail_changelist"))
    assert NO_APP_URL in messages_of(response)
    settings.KGC_APP_URL = "https://app.example.com"
    response = admin_client.get(reverse("admin:notifications_outboundemail_changelist"))
    assert NO_APP_URL not in messages_of(response)


def test_the_notification_list_filters_escalations_and_final_digest_statuses(admin_client):
    page = admin_client.get(reverse("admin:notifications_notification_changelist")).content.decode()
    assert "?kind__exact=filing_escalation" in page and "Overdue filing escalation" in page
    assert "?email_status__exact=resolved" in page and "?email_status__exact=expired" in page


def test_with_a_public_url_there_is_no_such_warning(admin_client, settings):
    settings.KGC_PUBLIC_URL = "https://jobs.example.com"
    response = admin_client.get(reverse("admin:notifications_notificationpreference_changelist"))
    assert NO_PUBLIC_URL not in messages_of(response)


def test_the_user_screen_edits_the_users_preferences(admin_client, tenant, member_of):
    user = member_of(tenant, "manager")
    url = reverse("admin:auth_user_change", args=[user.pk])
    page = admin_client.get(url)
    assert "Notification email preferences" in page.text
    form = {**_user_form(page), **_inline(tenant.pk, "filing_reminder", "off")}
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.context["inline_admin_formsets"][-1].formset.errors
    assert list(NotificationPreference.objects.values_list("user_id", "kind", "email")) == [
        (user.pk, "filing_reminder", "off")
    ]


def test_a_preference_in_a_tenant_the_user_is_not_a_member_of_is_refused_readably(admin_client, tenant, member_of):
    user = member_of(tenant, "manager")
    url = reverse("admin:auth_user_change", args=[user.pk])
    form = {**_user_form(admin_client.get(url)), **_inline(TenantFactory().pk, "filing_reminder", "off")}
    response = admin_client.post(url, form)
    assert response.status_code == 200
    assert "Select a valid choice" in response.text
    assert not NotificationPreference.objects.exists()


def test_a_preference_names_its_tenant_among_the_users_own_not_by_a_typed_id(admin_client, tenant, member_of):
    from tests.factories import MembershipFactory

    user = member_of(tenant, "manager")
    other = TenantFactory(name="Granite Audit Group")
    MembershipFactory(tenant=other, user=user, role="viewer")
    TenantFactory(name="Someone Else's Firm")
    page = admin_client.get(reverse("admin:auth_user_change", args=[user.pk]))
    field = page.context["inline_admin_formsets"][-1].formset.empty_form.fields["tenant"]
    assert {t.pk for t in field.queryset} == {tenant.pk, other.pk}
    assert "Granite Audit Group</option>" in page.text and "Someone Else" not in page.text
    assert "vForeignKeyRawIdAdminField" not in page.text  # no id to type in


def test_the_tenant_page_links_each_member_straight_to_their_preferences(admin_client, tenant, member_of):
    user = member_of(tenant, "manager")
    tenant_page = admin_client.get(reverse("admin:compliance_tenant_change", args=[tenant.pk])).text
    link = reverse("admin:auth_user_change", args=[user.pk]) + "#notification_preferences-group"
    assert f'href="{link}"' in tenant_page
    assert 'id="notification_preferences-group"' in admin_client.get(link.partition("#")[0]).text


def _user_form(page) -> dict[str, str]:
    """The user change form as the browser posts it, unchanged, with every inline formset empty."""
    user = page.context["original"]
    data = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_active": "on",
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
    }
    for formset in page.context["inline_admin_formsets"]:
        prefix = formset.formset.prefix
        data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})
    return data


def _inline(tenant_id: int, kind: str, email: str) -> dict[str, str]:
    prefix = "notification_preferences"
    return {
        f"{prefix}-TOTAL_FORMS": "1",
        f"{prefix}-INITIAL_FORMS": "0",
        f"{prefix}-0-tenant": str(tenant_id),
        f"{prefix}-0-kind": kind,
        f"{prefix}-0-email": email,
    }


def test_the_tenant_screen_shows_each_members_preferences_without_a_query_per_member(admin_client, member_of):
    def queries_for(*, with_choices: bool) -> int:
        firm = TenantFactory()
        for _ in range(5):
            user = member_of(firm, "manager")
            if with_choices:
                NotificationPreference.objects.create(tenant=firm, user=user, kind="document_expiry", email="off")
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(reverse("admin:compliance_tenant_change", args=[firm.pk]))
        expected = "document expiry: off" if with_choices else "the tenant&#x27;s default for every kind"
        assert response.text.count(expected) == 5
        return len(queries)

    queries_for(with_choices=False)  # the first page of the test fills Django's caches
    assert queries_for(with_choices=True) == queries_for(with_choices=False)


def test_the_tenant_list_shows_the_notification_email_default(admin_client, tenant):
    tenant.notification_email_default = "daily_digest"
    tenant.save()
    response = admin_client.get(reverse("admin:compliance_tenant_changelist"))
    assert "In one daily digest" in response.text


def test_a_digest_shows_its_items(admin_client, tenant, reader, waiting, digest_day):
    ana = reader()
    waiting(document_draft(ana, client_name="Blue River"), filing_draft(ana, client_name="Blue River"))
    digests_send(tenant=tenant, as_of=digest_day)
    digest = ana.digests.get()
    response = admin_client.get(reverse("admin:notifications_digest_change", args=[digest.pk]))
    assert response.status_code == 200
    for item in ana.notifications.all():
        assert item.title in response.text


def test_an_operator_adds_a_suppression_by_hand(admin_client, tenant):
    response = admin_client.post(
        reverse("admin:notifications_suppression_add"),
        {"email": "Pat@Example.com", "reason": "manual", "tenant": str(tenant.pk), "description": "asked by phone"},
    )
    assert response.status_code == 302
    assert list(Suppression.objects.values_list("email", "reason", "tenant_id")) == [
        ("pat@example.com", "manual", tenant.pk)
    ]


def test_lifting_suppressions_asks_first_then_deletes_and_logs(admin_client):
    suppression = Suppression.objects.create(email="pat@example.com", reason="bounced")
    url = reverse("admin:notifications_suppression_changelist")
    form = {"action": "lift", "_selected_action": [suppression.pk]}
    assert "Are you sure" in admin_client.post(url, form).text
    assert Suppression.objects.exists()
    admin_client.post(url, {**form, "post": "yes"})
    assert not Suppression.objects.exists()
    assert LogEntry.objects.get().action_flag == DELETION


def test_the_suppression_list_shows_their_scope(admin_client, tenant):
    Suppression.objects.create(email="pat@example.com", reason="bounced")
    Suppression.objects.create(email="sam@example.com", reason="complained", tenant=tenant)
    response = admin_client.get(reverse("admin:notifications_suppression_changelist"))
    assert "every tenant" in response.text and tenant.name in response.text


def test_a_preference_is_added_by_finding_its_tenant_and_user_by_name(admin_client):
    page = admin_client.get(reverse("admin:notifications_notificationpreference_add"))
    assert page.status_code == 200
    assert page.text.count("admin-autocomplete") >= 2  # the tenant and the user, searched as typed
