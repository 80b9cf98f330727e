"""The queue dashboard and the jobs screens, through Django's test client."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.urls import reverse
from procrastinate.contrib.django.models import ProcrastinateJob

from kgc import admin as console
from kgc import jobs
from tests.ops.conftest import defer, events_move, fail, heartbeat, status_of, succeed

DASHBOARD = "admin:kgc_queuepause_changelist"
JOBS = "admin:procrastinate_procrastinatejob_changelist"
CHANGE_URL = "admin:procrastinate_procrastinatejob_change"

pytestmark = pytest.mark.django_db


def _messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


# --- Who may see it -------------------------------------------------------------------------

PAGES = [
    (DASHBOARD, []),
    ("admin:kgc_dashboard_data", []),
    ("admin:kgc_queue_pause", ["email"]),
    ("admin:kgc_queue_cleanup", []),
    (JOBS, []),
]


@pytest.mark.parametrize(("name", "args"), PAGES)
def test_anonymous_visitors_are_sent_to_the_login_page(client, name, args):
    response = client.get(reverse(name, args=args))
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


@pytest.mark.parametrize(("name", "args"), PAGES)
def test_users_who_are_not_staff_are_sent_to_the_login_page(admin_client_for, name, args):
    from tests.factories import UserFactory

    response = admin_client_for(UserFactory(is_staff=False)).get(reverse(name, args=args))
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


@pytest.mark.parametrize(("name", "args"), PAGES)
def test_staff_without_permission_are_refused(admin_client_for, staff_without_permissions, name, args):
    response = admin_client_for(staff_without_permissions).get(reverse(name, args=args))
    assert response.status_code == 403


def test_staff_who_may_only_view_cannot_pause(admin_client_for, staff_viewer):
    client = admin_client_for(staff_viewer)
    assert client.get(reverse(DASHBOARD)).status_code == 200
    assert client.post(reverse("admin:kgc_queue_pause", args=["email"])).status_code == 403
    assert not jobs.is_paused("email")


def test_the_admin_index_links_to_the_dashboard(staff_client):
    response = staff_client.get(reverse("admin:index"))
    assert reverse(DASHBOARD) in response.content.decode()


# --- The dashboard ----------------------------------------------------------------------------


def test_dashboard_shows_a_queue_backing_up(staff_client):
    for _ in range(3):
        defer("email")
    events_move(defer("email"), by=timedelta(minutes=20))  # not the first in line: lowest id is
    first = ProcrastinateJob.objects.filter(queue_name="email").order_by("id").first()
    assert first is not None
    events_move(first.pk, by=timedelta(minutes=30))
    response = staff_client.get(reverse(DASHBOARD))
    email = next(q for q in response.context["queues"] if q.name == "email")
    assert email.stats.waiting == 4
    assert email.oldest_waiting_text.startswith("30m")
    assert "kgc-backlog" in response.content.decode()


def test_dashboard_data_endpoint_reports_counts_and_pause_flag(staff_client):
    defer("compliance")
    jobs.pause_queue("compliance")
    data = staff_client.get(reverse("admin:kgc_dashboard_data")).json()
    assert data["queues"]["compliance"]["paused"] == 1
    assert data["queues"]["compliance"]["is_paused"] is True
    assert data["queues"]["email"]["waiting"] == 0


def test_dashboard_chart_counts_jobs_completed_and_failed(staff_client):
    succeed(defer("email"))
    succeed(defer("email"))
    fail(defer("email"))
    chart = staff_client.get(reverse(DASHBOARD)).context["chart"]
    assert (chart["completed"], chart["failed"]) == (2, 1)
    assert len(chart["bars"]) == 288


def test_dashboard_chart_leaves_out_jobs_finished_over_a_day_ago(staff_client):
    job_id = defer("email")
    succeed(job_id)
    events_move(job_id, by=timedelta(hours=25))
    assert staff_client.get(reverse(DASHBOARD)).context["chart"]["completed"] == 0


def test_dashboard_lists_workers_with_their_heartbeat(staff_client):
    alive = heartbeat()
    silent = heartbeat(age=timedelta(minutes=5))
    workers = staff_client.get(reverse(DASHBOARD)).context["workers"]
    assert [(worker.id, is_alive) for worker, is_alive, _ in workers] == [(alive, True), (silent, False)]


def test_dashboard_lists_every_schedule_with_its_next_run(staff_client):
    schedules = staff_client.get(reverse(DASHBOARD)).context["schedules"]
    retention = next(s for s in schedules if s.task == "kgc.retention")
    assert (retention.next_run.minute, retention.next_run.tzinfo is not None) == (17, True)
    assert {s.task for s in schedules} >= {"compliance.refresh_all", "notifications.check_expiry_all"}


def test_pause_asks_for_confirmation_first(staff_client):
    response = staff_client.get(reverse("admin:kgc_queue_pause", args=["email"]))
    assert "Yes, pause email" in response.content.decode()
    assert not jobs.is_paused("email")


def test_pause_pauses_says_so_and_is_logged_with_the_user(staff_client, superuser):
    response = staff_client.post(reverse("admin:kgc_queue_pause", args=["email"]), follow=True)
    assert jobs.is_paused("email")
    assert "Paused the email queue." in _messages(response)
    entry = LogEntry.objects.get()
    assert (entry.user, entry.action_flag, entry.object_id) == (superuser, ADDITION, "email")


def test_resume_resumes_says_so_and_is_logged(staff_client, superuser):
    jobs.pause_queue("email")
    response = staff_client.post(reverse("admin:kgc_queue_resume", args=["email"]), follow=True)
    assert not jobs.is_paused("email")
    assert "Resumed the email queue." in _messages(response)
    assert LogEntry.objects.get().action_flag == DELETION


def test_pause_of_an_unknown_queue_is_not_found(staff_client):
    assert staff_client.post(reverse("admin:kgc_queue_pause", args=["nope"])).status_code == 404


def test_retry_failed_of_a_queue_puts_its_failed_jobs_back(staff_client):
    failed, other = defer("email"), defer("compliance")
    fail(failed)
    fail(other)
    response = staff_client.post(reverse("admin:kgc_queue_retry_failed", args=["email"]), follow=True)
    assert (status_of(failed), status_of(other)) == ("todo", "failed")
    assert "Put 1 failed job(s) of the email queue back in the queue." in _messages(response)


def test_retry_failed_confirmation_counts_the_send_jobs_left_out_for_unknown_delivery(staff_client, failed_send_job):
    failed_send_job(delivery_unknown=True)
    failed_send_job(delivery_unknown=False)
    page = staff_client.get(reverse("admin:kgc_queue_retry_failed", args=["email"])).content.decode()
    assert "1 failed job(s) go back to waiting" in page
    assert "1 left out: send jobs whose email&#x27;s delivery is unknown" in page


def test_retry_failed_of_a_queue_leaves_out_send_jobs_whose_delivery_is_unknown(staff_client, failed_send_job):
    unknown, _ = failed_send_job(delivery_unknown=True)
    other, _ = failed_send_job(delivery_unknown=False)
    response = staff_client.post(reverse("admin:kgc_queue_retry_failed", args=["email"]), follow=True)
    assert (status_of(unknown), status_of(other)) == ("failed", "todo")
    [message] = _messages(response)
    assert message.startswith("Put 1 failed job(s) of the email queue back in the queue. 1 left out: send jobs")


def test_cleanup_asks_for_confirmation_then_deletes_old_finished_jobs(staff_client):
    old, recent = defer("email"), defer("email")
    succeed(old)
    succeed(recent)
    events_move(old, by=timedelta(days=8))
    form = {"queue": "email", "completed_age": "7d", "failed_age": ""}
    staff_client.get(reverse("admin:kgc_queue_cleanup"), form)
    assert ProcrastinateJob.objects.filter(pk=old).exists()
    response = staff_client.post(reverse("admin:kgc_queue_cleanup"), {**form, "confirm": "yes"}, follow=True)
    assert list(ProcrastinateJob.objects.values_list("pk", flat=True)) == [recent]
    assert any(m.startswith("Deleted 1 completed and 0 failed job(s)") for m in _messages(response))
    assert LogEntry.objects.get().action_flag == DELETION


def test_cleanup_with_a_bad_age_deletes_nothing_and_says_why(staff_client):
    succeed(defer("email"))
    response = staff_client.post(
        reverse("admin:kgc_queue_cleanup"), {"queue": "email", "completed_age": "0x", "confirm": "yes"}, follow=True
    )
    assert ProcrastinateJob.objects.count() == 1
    assert any("completed age: expected an age" in m for m in _messages(response))


# --- Jobs -------------------------------------------------------------------------------------


def test_failed_job_shows_every_attempt_with_its_traceback(staff_client):
    job_id = defer("email")
    fail(job_id, messages=("smtp timed out", "mailbox unavailable"))
    page = staff_client.get(reverse(CHANGE_URL, args=[job_id])).content.decode()
    assert "Attempt 1" in page and "Attempt 2" in page
    assert "smtp timed out" in page and "mailbox unavailable" in page
    assert "Traceback (most recent call last)" in page
    assert "raise ValueError(message)" in page


def test_job_detail_shows_its_event_timeline(staff_client):
    job_id = defer("email")
    fail(job_id)
    events = staff_client.get(reverse(CHANGE_URL, args=[job_id])).context["events"]
    assert [event.type for event in events] == ["deferred", "started", "failed"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"queue_name": "compliance"}, ["compliance-7"]),
        ({"status": "failed"}, ["email-9"]),
        ({"tenant": "7"}, ["compliance-7"]),
        ({"task_name": "tests.noop_email"}, ["email-9", "email-None"]),
    ],
)
def test_job_list_filters(staff_client, query, expected):
    defer("email")
    defer("compliance", tenant_id=7)
    fail(defer("email", tenant_id=9))
    results = staff_client.get(reverse(JOBS), query).context["cl"].result_list
    assert [f"{job.queue_name}-{job.args.get('tenant_id')}" for job in results] == expected


def test_job_search_by_id_finds_that_job(staff_client):
    defer("email")
    wanted = defer("email")
    results = staff_client.get(reverse(JOBS), {"q": str(wanted)}).context["cl"].result_list
    assert [job.pk for job in results] == [wanted]


def test_filtered_job_list_counts_only_up_to_the_next_page(staff_client):
    for _ in range(5):
        defer("email")
    paginator = console.EstimatedCountPaginator(
        ProcrastinateJob.objects.filter(queue_name="email").order_by("-id"), 2, page_number=1
    )
    assert paginator.count == 3  # two on this page, and proof of a next one


def test_retry_action_asks_for_confirmation_first(staff_client):
    job_id = defer("email")
    fail(job_id)
    response = staff_client.post(reverse(JOBS), {"action": "retry_jobs", "_selected_action": [job_id], "index": 0})
    assert "Yes, retry them" in response.content.decode()
    assert status_of(job_id) == "failed"


def test_retry_action_retries_only_failed_jobs_and_logs_each(staff_client, superuser):
    failed, done = defer("email"), defer("email")
    fail(failed)
    succeed(done)
    response = staff_client.post(
        reverse(JOBS),
        {"action": "retry_jobs", "_selected_action": [failed, done], "index": 0, "confirm": "yes"},
        follow=True,
    )
    assert (status_of(failed), status_of(done)) == ("todo", "succeeded")
    assert f"Retried 1 failed job(s): {failed}." in _messages(response)
    entry = LogEntry.objects.get()
    assert (entry.object_id, entry.user, entry.action_flag) == (str(failed), superuser, CHANGE)


def test_cancel_action_cancels_only_waiting_jobs(staff_client):
    waiting, failed = defer("email"), defer("email")
    fail(failed)
    response = staff_client.post(
        reverse(JOBS),
        {"action": "cancel_jobs", "_selected_action": [waiting, failed], "index": 0, "confirm": "yes"},
        follow=True,
    )
    assert (status_of(waiting), status_of(failed)) == ("cancelled", "failed")
    assert f"Cancelled 1 waiting job(s): {waiting}." in _messages(response)
    assert LogEntry.objects.get().object_id == str(waiting)


def test_retry_button_on_a_failed_job_confirms_then_retries(staff_client):
    job_id = defer("email")
    fail(job_id)
    url = reverse("admin:kgc_job_retry", args=[job_id])
    assert "Yes, retry this job" in staff_client.get(url).content.decode()
    assert status_of(job_id) == "failed"
    staff_client.post(url)
    assert status_of(job_id) == "todo"
    assert LogEntry.objects.count() == 1


def test_retry_action_on_selected_jobs_leaves_out_send_jobs_whose_delivery_is_unknown(staff_client, failed_send_job):
    unknown, _ = failed_send_job(delivery_unknown=True)
    other, _ = failed_send_job(delivery_unknown=False)
    response = staff_client.post(
        reverse(JOBS),
        {"action": "retry_jobs", "_selected_action": [unknown, other], "index": 0, "confirm": "yes"},
        follow=True,
    )
    assert (status_of(unknown), status_of(other)) == ("failed", "todo")
    assert any(message.startswith("1 left out: send jobs") for message in _messages(response))


def test_retry_button_of_one_send_job_whose_delivery_is_unknown_sends_it_again(staff_client, failed_send_job):
    job_id, email = failed_send_job(delivery_unknown=True)
    staff_client.post(reverse("admin:kgc_job_retry", args=[job_id]))
    email.refresh_from_db()
    assert (status_of(job_id), email.status) == ("todo", "queued")


def test_viewer_gets_no_job_actions(admin_client_for, staff_viewer):
    job_id = defer("email")
    fail(job_id)
    client = admin_client_for(staff_viewer)
    assert client.post(reverse("admin:kgc_job_retry", args=[job_id])).status_code == 403
    assert status_of(job_id) == "failed"
