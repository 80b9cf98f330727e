"""The admin: failed emails visible with their error, resent after a confirmation, logged."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse
from django.utils import timezone
from procrastinate.contrib.django.models import ProcrastinateJob

from notifications.models import EmailEvent, Notification, OutboundEmail

pytestmark = [
    pytest.mark.django_db,
    # WhiteNoise warns when collectstatic has not run (a test checkout); the admin works without it.
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]

CHANGELIST = "admin:notifications_outboundemail_changelist"


@pytest.fixture
def failed_email(notified_email):
    email = notified_email()
    OutboundEmail.objects.filter(pk=email.pk).update(status="failed", last_error="SMTP 550 5.1.1 no such user")
    Notification.objects.filter(pk=email.notification_id).update(email_status="failed")
    ProcrastinateJob.objects.all().delete()  # the original send job has run
    return email


def resend(admin_client, *emails, confirm: bool):
    data = {"action": "resend_failed", "_selected_action": [e.pk for e in emails]}
    if confirm:
        data["confirm"] = "yes"
    return admin_client.post(reverse(CHANGELIST), data, follow=confirm)


def test_failed_filter_lists_failed_emails_with_their_error(admin_client, failed_email, make_email):
    make_email(subject="A queued one")
    response = admin_client.get(reverse(CHANGELIST), {"status__exact": "failed"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "SMTP 550 5.1.1 no such user" in page
    assert "A queued one" not in page


def test_email_page_shows_readable_context(admin_client, failed_email):
    response = admin_client.get(reverse("admin:notifications_outboundemail_change", args=[failed_email.pk]))
    assert response.status_code == 200
    assert "&quot;documentTitle&quot;: &quot;TIN Certificate&quot;" in response.content.decode()


def test_notification_list_filters_by_email_status(admin_client, failed_email):
    url = reverse("admin:notifications_notification_changelist")
    response = admin_client.get(url, {"email_status__exact": "failed"})
    assert response.status_code == 200
    assert "TIN Certificate of ACME Corp" in response.content.decode()


def test_resend_asks_for_confirmation_first(admin_client, failed_email):
    response = resend(admin_client, failed_email, confirm=False)
    assert response.status_code == 200
    assert "Yes, resend" in response.content.decode()
    failed_email.refresh_from_db()
    assert failed_email.status == "failed"
    assert not ProcrastinateJob.objects.exists()


def test_confirmed_resend_puts_the_email_back_in_line(admin_client, failed_email):
    resend(admin_client, failed_email, confirm=True)
    failed_email.refresh_from_db()
    assert (failed_email.status, failed_email.attempts, failed_email.last_error) == ("queued", 0, "")
    assert Notification.objects.get(pk=failed_email.notification_id).email_status == "queued"
    assert not ProcrastinateJob.objects.exists()  # the outbox sends it: no job


def test_confirmed_resend_says_what_it_did_and_logs_it(admin_client, failed_email):
    response = resend(admin_client, failed_email, confirm=True)
    assert "Queued 1 failed email again" in response.content.decode()
    entry = LogEntry.objects.get(object_id=str(failed_email.pk))
    assert entry.change_message.startswith("Resent")


def test_resend_leaves_bounced_and_unfailed_emails_alone(admin_client, failed_email, make_email):
    EmailEvent.objects.create(
        tenant_id=failed_email.tenant_id,
        outbound_email=failed_email,
        event_type="bounced",
        event_key="Postmark:1",
        provider="Postmark",
    )
    sent = make_email(status="sent")
    response = resend(admin_client, failed_email, sent, confirm=True)
    assert "Nothing resent" in response.content.decode()
    assert not ProcrastinateJob.objects.exists()
    failed_email.refresh_from_db()
    assert failed_email.status == "failed"


def test_email_list_query_count_does_not_grow_with_rows(admin_client, make_email, django_assert_max_num_queries):
    for n in range(30):
        make_email(subject=f"Email {n}")
    with django_assert_max_num_queries(12):
        admin_client.get(reverse(CHANGELIST))


def test_bulk_resend_leaves_out_an_email_whose_delivery_is_unknown(admin_client, failed_send_job):
    _, unknown = failed_send_job(delivery_unknown=True)
    _, other = failed_send_job(delivery_unknown=False)
    confirmation = resend(admin_client, unknown, other, confirm=False).content.decode()
    assert "1 email whose delivery is unknown is left out" in confirmation
    resend(admin_client, unknown, other, confirm=True)
    unknown.refresh_from_db()
    other.refresh_from_db()
    assert (unknown.status, other.status) == ("failed", "queued")


def test_resend_of_one_email_whose_delivery_is_unknown_warns_then_sends_it_again(admin_client, failed_send_job):
    _, email = failed_send_job(delivery_unknown=True)
    url = reverse("admin:notifications_outboundemail_resend", args=[email.pk])
    page = admin_client.get(url).content.decode()
    assert "may already have reached" in page
    email.refresh_from_db()
    assert email.status == "failed"
    admin_client.post(url)
    email.refresh_from_db()
    assert (email.status, email.delivery_unknown) == ("queued", False)


def test_failed_email_page_links_to_its_resend(admin_client, failed_send_job):
    _, email = failed_send_job(delivery_unknown=True)
    page = admin_client.get(reverse("admin:notifications_outboundemail_change", args=[email.pk])).content.decode()
    assert reverse("admin:notifications_outboundemail_resend", args=[email.pk]) in page


# --- Records: read-only, with actions for what an operator may do ---------------------------------

EMAIL_PAGE = "admin:notifications_outboundemail_change"


def test_there_is_no_adding_an_outbound_email(admin_client):
    assert admin_client.get(reverse("admin:notifications_outboundemail_add")).status_code == 403
    assert "addlink" not in admin_client.get(reverse(CHANGELIST)).content.decode()


def test_a_sent_emails_recipient_subject_and_template_cannot_be_edited(admin_client, make_email):
    email = make_email(status="sent", subject="Your documents")
    page = admin_client.get(reverse(EMAIL_PAGE, args=[email.pk])).content.decode()
    for field in ("to_email", "subject", "template", "status"):
        assert f'name="{field}"' not in page
    assert 'name="_save"' not in page and "Your documents" in page
    response = admin_client.post(
        reverse(EMAIL_PAGE, args=[email.pk]),
        {"to_email": "someone@else.example", "subject": "Edited", "template": "custom", "tenant": email.tenant_id},
    )
    assert response.status_code == 403
    email.refresh_from_db()
    assert (email.to_email, email.subject) == ("pat@example.com", "Your documents")


def test_a_notifications_email_status_is_no_dropdown_and_cannot_be_set(admin_client, notified_email):
    notification = notified_email().notification
    url = reverse("admin:notifications_notification_change", args=[notification.pk])
    page = admin_client.get(url).content.decode()
    assert 'name="email_status"' not in page and "<select" not in page.split('id="content-main"')[1]
    assert admin_client.post(url, {"email_status": "sent"}).status_code == 403
    notification.refresh_from_db()
    assert notification.email_status == "queued"


@pytest.mark.parametrize("model", ["notification", "outboundemail", "digest"])
def test_records_are_neither_added_nor_deleted_in_the_admin(admin_client, model):
    assert admin_client.get(reverse(f"admin:notifications_{model}_add")).status_code == 403
    changelist = admin_client.get(reverse(f"admin:notifications_{model}_changelist")).content.decode()
    assert 'value="delete_selected"' not in changelist


def test_delivery_unknown_no_is_a_word_not_a_red_cross(admin_client, make_email):
    email = make_email(status="sent")
    page = admin_client.get(reverse(EMAIL_PAGE, args=[email.pk])).content.decode()
    assert "icon-no.svg" not in page and "icon-yes.svg" not in page
    unknown = make_email(status="failed", delivery_unknown=True, last_error="no answer after the data")
    page = admin_client.get(reverse(EMAIL_PAGE, args=[unknown.pk])).content.decode()
    assert "yes: the message may have reached the recipient" in page
    assert "Failed: delivery unknown" in page


def test_an_email_waiting_to_retry_says_so_in_its_list_page_and_notification(admin_client, notified_email):
    email = notified_email()
    due = timezone.now() + timedelta(minutes=4)
    OutboundEmail.objects.filter(pk=email.pk).update(
        status="retrying", attempts=2, available_at=due, last_error="SMTP 451 try later"
    )
    listing = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert ">waiting to retry</span>" in listing and "Waiting to retry (attempt 3 of 6" in listing
    page = admin_client.get(reverse(EMAIL_PAGE, args=[email.pk])).content.decode()
    assert f"Waiting to retry (attempt 3 of 6, due {due:%Y-%m-%d %H:%M} UTC)" in page
    notifications = admin_client.get(reverse("admin:notifications_notification_changelist")).content.decode()
    assert "Waiting to retry" in notifications


def test_retry_now_asks_then_puts_an_email_waiting_to_retry_back_in_line_and_logs_it(admin_client, make_email):
    waiting = make_email(status="retrying", attempts=1, available_at=timezone.now() + timedelta(minutes=30))
    sent = make_email(status="sent")
    form = {"action": "retry_now", "_selected_action": [waiting.pk, sent.pk]}
    confirmation = admin_client.post(reverse(CHANGELIST), form).content.decode()
    assert "1 email waiting to retry will go back in line now" in confirmation
    assert "1 selected email is left alone" in confirmation
    waiting.refresh_from_db()
    assert waiting.status == "retrying"
    response = admin_client.post(reverse(CHANGELIST), {**form, "confirm": "yes"}, follow=True)
    assert "1 email back in line now" in response.content.decode()
    waiting.refresh_from_db()
    sent.refresh_from_db()
    assert (waiting.status, waiting.available_at, waiting.attempts, sent.status) == ("queued", None, 1, "sent")
    assert LogEntry.objects.get(object_id=str(waiting.pk)).change_message.startswith("Retried now")


def test_an_email_waiting_to_retry_offers_retry_now_on_its_page(admin_client, make_email):
    waiting = make_email(status="retrying", attempts=1, available_at=timezone.now() + timedelta(minutes=30))
    assert 'id="retry-email-now"' in admin_client.get(reverse(EMAIL_PAGE, args=[waiting.pk])).content.decode()


def test_an_operator_who_may_only_view_sees_emails_but_cannot_resend(client, failed_email):
    from django.contrib.auth.models import Permission

    from tests.factories import UserFactory

    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_outboundemail"))
    client.force_login(viewer)
    page = client.get(reverse(EMAIL_PAGE, args=[failed_email.pk]))
    assert page.status_code == 200 and 'id="resend-email"' not in page.content.decode()
    assert client.get(reverse("admin:notifications_outboundemail_resend", args=[failed_email.pk])).status_code == 403


@pytest.mark.parametrize(
    ("status", "attempts", "unknown", "expected"),
    [
        ("queued", 0, False, "Queued"),
        ("queued", 2, False, "Queued to retry (attempt 3 of 6)"),
        ("retrying", 1, False, "Waiting to retry (attempt 2 of 6)"),
        ("sending", 1, False, "Sending (attempt 1 of 6)"),
        ("sent", 1, False, "Sent"),
        ("failed", 6, False, "Failed"),
        ("failed", 1, True, "Failed: delivery unknown (it may have reached the recipient)"),
        ("suppressed", 0, False, "Suppressed (not handed to the server)"),
    ],
)
def test_an_emails_state_in_words(status, attempts, unknown, expected):
    from notifications.admin import email_status_text

    assert email_status_text(status=status, attempts=attempts, max_attempts=6, delivery_unknown=unknown) == expected


@pytest.mark.parametrize(
    ("notification", "email", "expected"),
    [
        ("queued", "queued", "Queued"),
        ("queued", "retrying", "Waiting to retry"),
        ("queued", "sending", "Sending"),
        ("queued", None, "Queued"),
        ("sent", "sent", "Sent"),
        ("digest_pending", None, "Waiting for the daily digest"),
    ],
)
def test_a_notifications_email_state_is_its_emails_while_that_one_is_on_its_way(notification, email, expected):
    from notifications.admin import notification_email_text

    assert notification_email_text(email_status=notification, email_of_it=email) == expected
