"""The queue dashboard and the jobs screens, through Django's test client."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.urls import reverse
from django.utils import timezone
from procrastinate.contrib.django.models import ProcrastinateJob

from kgc.console import display
from kgc.console import jobs_list as console_admin
from kgc.queue import jobs
from kgc.queue.models import JobFailure, JobResult, RateLimitSlot
from tests.factories import TenantFactory
from tests.kgc.console.conftest import (
    defer,
    events_move,
    fail,
    heartbeat,
    lease,
    run_on,
    status_of,
    succeed,
    worker_process,
)

DASHBOARD = "admin:kgc_queuepause_changelist"
JOBS = "admin:procrastinate_procrastinatejob_changelist"
CHANGE_URL = "admin:procrastinate_procrastinatejob_change"

PRODUCT_QUEUES = ("compliance", "expiry-notification", "filing-reminder", "email")

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
        defer("filing-reminder")
    events_move(defer("filing-reminder"), by=timedelta(minutes=20))  # not the first in line: lowest id is
    first = ProcrastinateJob.objects.filter(queue_name="filing-reminder").order_by("id").first()
    assert first is not None
    events_move(first.pk, by=timedelta(minutes=30))
    response = staff_client.get(reverse(DASHBOARD))
    queue = next(q for q, _, _ in response.context["queues"] if q.name == "filing-reminder")
    assert queue.stats.waiting == 4
    assert queue.oldest_waiting_text.startswith("30m")
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
    assert [(worker.id, worker.alive) for worker in workers] == [(alive, True), (silent, False)]


def test_dashboard_shows_each_worker_with_host_pid_queues_duties_and_running_jobs(staff_client):
    duties = {"heartbeat": {"state": "failing", "restarts": 2, "failing_since": "2026-12-01T11:59:00Z"}}
    worker_id = worker_process(host="app-7", pid=4321, queues=("email",), concurrency={"email": 5}, duties=duties)
    job_id = defer("email")
    run_on(job_id, worker_id)
    page = staff_client.get(reverse(DASHBOARD)).content.decode()
    row = page[page.index(f'<tr data-worker="{worker_id}">') :].split("</tr>")[0]
    assert "app-7" in row and "4321" in row and "email &times;5" in row
    assert 'class="kgc-chip kgc-chip-failing"' in row and "failing since 2026-12-01T11:59:00Z" in row
    assert reverse(CHANGE_URL, args=[job_id]) in row


def test_dashboard_names_the_lease_holder(staff_client):
    worker_id = worker_process(host="app-3", pid=77)
    lease(worker_id)
    page = staff_client.get(reverse(DASHBOARD)).content.decode()
    assert f"Worker {worker_id} (app-3, pid 77)" in page
    assert "kgc-badge-leader" in page


def test_dashboard_shows_concurrency_rate_limit_use_throughput_and_failure_rate(staff_client):
    worker_process(queues=("compliance",), concurrency={"compliance": 5})
    RateLimitSlot.objects.create(queue_name="compliance", slot=timezone.now(), starts=3)
    succeed(defer("compliance"))
    fail(defer("compliance"))
    data = staff_client.get(reverse("admin:kgc_dashboard_data")).json()["queues"]["compliance"]
    assert {key: data[key] for key in ("concurrency", "rate_limit", "per_minute_5", "failure_rate")} == {
        "concurrency": 5,
        "rate_limit": "3 of 5 / 60 s",
        "per_minute_5": "0.4/min",
        "failure_rate": "50 %",
    }


def test_dashboard_chart_draws_one_series_per_queue_on_request(staff_client):
    succeed(defer("email"))
    succeed(defer("compliance"))
    page = staff_client.get(reverse(DASHBOARD), {"chart": "queues"}).content.decode()
    assert '<polyline points="' in page
    assert 'data-queue="email"' in page and 'data-queue="compliance"' in page


def test_dashboard_chart_stretches_to_the_page_width(staff_client):
    page = staff_client.get(reverse(DASHBOARD)).content.decode()
    assert 'preserveAspectRatio="none"' in page and 'width="864"' not in page


def test_pause_all_asks_for_confirmation_first(staff_client):
    response = staff_client.get(reverse("admin:kgc_queue_pause_all"))
    assert "Yes, pause them all" in response.content.decode()
    assert not any(jobs.is_paused(name) for name in PRODUCT_QUEUES)


def test_pause_all_pauses_every_product_queue_and_logs_each(staff_client, superuser):
    jobs.pause_queue("email")
    response = staff_client.post(reverse("admin:kgc_queue_pause_all"), follow=True)
    assert all(jobs.is_paused(name) for name in PRODUCT_QUEUES)
    assert not jobs.is_paused("maintenance")
    assert "Paused 3 queues: compliance, expiry-notification, filing-reminder." in _messages(response)
    assert LogEntry.objects.filter(user=superuser, action_flag=CHANGE).count() == 3


def test_resume_all_resumes_every_paused_queue(staff_client):
    for name in PRODUCT_QUEUES:
        jobs.pause_queue(name)
    response = staff_client.post(reverse("admin:kgc_queue_resume_all"), follow=True)
    assert not any(jobs.is_paused(name) for name in PRODUCT_QUEUES)
    assert "Resumed 4 queues: compliance, expiry-notification, filing-reminder, email." in _messages(response)


def test_viewer_cannot_pause_all(admin_client_for, staff_viewer):
    assert admin_client_for(staff_viewer).post(reverse("admin:kgc_queue_pause_all")).status_code == 403


def test_dashboard_lists_every_schedule_with_its_next_run(staff_client):
    response = staff_client.get(reverse(DASHBOARD))
    schedules = response.context["schedules"]
    retention = next(s for s in schedules if s.task == "kgc.retention")
    assert (retention.next_run.minute, retention.next_run.tzinfo is not None) == (17, True)
    assert {s.task for s in schedules} >= {"compliance.refresh_all", "notifications.morning_checks_all"}
    morning = next(s for s in schedules if s.task == "notifications.morning_checks_all")
    # Hourly, with how it maps to the seed's 08:00 UTC cron in each tenant's own time.
    assert morning.cron == "0 * * * *"
    assert "08:00 its local time" in morning.note and "0 8 * * * (UTC) for a tenant in UTC" in morning.note
    assert "each tenant at 08:00 its local time (KGC_REMINDER_HOUR)" in response.content.decode()


def test_pause_asks_for_confirmation_first(staff_client):
    response = staff_client.get(reverse("admin:kgc_queue_pause", args=["email"]))
    assert "Yes, pause email" in response.content.decode()
    assert not jobs.is_paused("email")


def test_pause_pauses_says_so_and_is_logged_with_the_user(staff_client, superuser):
    response = staff_client.post(reverse("admin:kgc_queue_pause", args=["email"]), follow=True)
    assert jobs.is_paused("email")
    assert "Paused the email queue." in _messages(response)
    entry = LogEntry.objects.get()
    assert (entry.user, entry.action_flag, entry.object_id) == (superuser, CHANGE, "email")


def test_resume_resumes_says_so_and_is_logged(staff_client, superuser):
    jobs.pause_queue("email")
    response = staff_client.post(reverse("admin:kgc_queue_resume", args=["email"]), follow=True)
    assert not jobs.is_paused("email")
    assert "Resumed the email queue." in _messages(response)
    assert LogEntry.objects.get().action_flag == CHANGE


def test_recent_actions_show_a_pause_and_a_resume_as_changes_leading_to_the_dashboard(staff_client):
    staff_client.post(reverse("admin:kgc_queue_pause", args=["email"]))
    staff_client.post(reverse("admin:kgc_queue_resume", args=["email"]))
    index = staff_client.get(reverse("admin:index")).content.decode()
    recent = index[index.index('id="recent-actions-module"') :]
    # The admin marks a deletion with a red cross ("deletelink"): resuming a queue deletes nothing.
    assert recent.count('class="changelink"') == 2 and "deletelink" not in recent and "addlink" not in recent
    assert "email queue: resumed" in recent and "email queue: paused" in recent
    link = reverse("admin:kgc_queuepause_change", args=["email"])
    assert link in recent
    assert staff_client.get(link)["Location"] == reverse(DASHBOARD)


@pytest.mark.parametrize(("app_url", "shown"), [("", False), ("https://app.example.com", True)])
def test_view_site_leads_to_the_web_app_or_is_not_offered(staff_client, settings, app_url, shown):
    settings.KGC_APP_URL = app_url
    page = staff_client.get(reverse("admin:index")).content.decode()
    assert ("View site" in page) is shown
    if shown:
        assert 'href="https://app.example.com"' in page


def test_pause_of_an_unknown_queue_is_not_found(staff_client):
    assert staff_client.post(reverse("admin:kgc_queue_pause", args=["nope"])).status_code == 404


def test_retry_failed_of_a_queue_puts_its_failed_jobs_back(staff_client):
    failed, other = defer("filing-reminder"), defer("compliance")
    fail(failed)
    fail(other)
    response = staff_client.post(reverse("admin:kgc_queue_retry_failed", args=["filing-reminder"]), follow=True)
    assert (status_of(failed), status_of(other)) == ("todo", "failed")
    assert "Put 1 failed job of the filing-reminder queue back in the queue." in _messages(response)


def test_retry_failed_confirmation_counts_the_emails_left_out_for_unknown_delivery(staff_client, failed_send_job):
    failed_send_job(delivery_unknown=True)
    failed_send_job(delivery_unknown=False)
    page = staff_client.get(reverse("admin:kgc_queue_retry_failed", args=["email"])).content.decode()
    assert "1 failed job goes back to waiting" in page
    assert "1 left out: emails whose delivery is unknown" in page


def test_retry_failed_of_the_email_queue_leaves_out_emails_whose_delivery_is_unknown(staff_client, failed_send_job):
    _, unknown = failed_send_job(delivery_unknown=True)
    _, other = failed_send_job(delivery_unknown=False)
    response = staff_client.post(reverse("admin:kgc_queue_retry_failed", args=["email"]), follow=True)
    unknown.refresh_from_db()
    other.refresh_from_db()
    assert (unknown.status, other.status) == ("failed", "queued")
    [message] = _messages(response)
    assert message.startswith("Put 1 failed job of the email queue back in the queue. 1 left out: emails whose")


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
    assert any(
        m.startswith("Deleted 1 finished job of the email queue (1 completed, 0 failed)") for m in _messages(response)
    )
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
        ({"tenant": "firm-seven"}, ["compliance-7"]),
        ({"task_name": "tests.noop_email"}, ["email-9", "email-None"]),
    ],
)
def test_job_list_filters(staff_client, query, expected):
    TenantFactory(pk=7, slug="firm-seven")
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


def test_a_filtered_job_list_shows_its_exact_total_up_to_the_limit(staff_client):
    for _ in range(5):
        defer("email")
    defer("compliance")
    response = staff_client.get(reverse(JOBS), {"queue_name": "email"})
    assert response.context["cl"].result_count == 5
    assert '<span id="kgc-result-count">5 jobs</span>' in response.content.decode()


def test_a_filtered_job_list_past_the_limit_shows_an_estimate(staff_client, monkeypatch):
    monkeypatch.setattr(console_admin.EstimatedCountPaginator, "EXACT_UP_TO", 3)
    for _ in range(5):
        defer("email")
    count = staff_client.get(reverse(JOBS), {"queue_name": "email"}).context["cl"].result_count
    assert isinstance(count, console_admin.EstimatedCount)
    assert str(count).startswith("about ")


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
    assert f"Retried 1 failed job: {failed}." in _messages(response)
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
    assert f"Cancelled 1 waiting job: {waiting}." in _messages(response)
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
    assert any(message.startswith("1 left out: emails whose delivery is unknown") for message in _messages(response))


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


# --- The jobs list: names, states, columns, ranges -----------------------------------------------


def test_job_list_is_called_jobs_with_styled_breadcrumbs(staff_client):
    page = staff_client.get(reverse(JOBS)).content.decode()
    assert "<h1>Jobs</h1>" in page
    assert '<ol class="breadcrumbs">' in page and '<div class="breadcrumbs">' not in page
    assert "rocrastinate job" not in page.split('<div id="content"')[1]


def test_admin_index_lists_the_jobs_as_jobs(staff_client):
    page = staff_client.get(reverse("admin:index")).content.decode()
    assert f'<a href="{reverse(JOBS)}">Jobs</a>' in page
    assert "Procrastinate" not in page


def _jobs_in_every_state() -> dict[str, int]:
    jobs.pause_queue("compliance")
    by_state = {
        "waiting": defer("email"),
        "paused": defer("compliance"),
        "delayed": jobs.job_defer(task_name="tests.noop_email", kwargs={}, schedule_in=timedelta(hours=1))[0],
        "active": defer("email"),
        "completed": defer("email"),
        "failed": defer("email"),
        "cancelled": defer("email"),
    }
    from tests.kgc.console.conftest import start

    start(by_state["active"])
    succeed(by_state["completed"])
    fail(by_state["failed"])
    ProcrastinateJob.objects.filter(pk=by_state["cancelled"]).update(status="cancelled")
    return by_state


@pytest.mark.parametrize("state", ["waiting", "paused", "delayed", "active", "completed", "failed", "cancelled"])
def test_job_list_filters_by_the_dashboards_state_names(staff_client, state):
    by_state = _jobs_in_every_state()
    results = staff_client.get(reverse(JOBS), {"status": state}).context["cl"].result_list
    assert [job.pk for job in results] == [by_state[state]]


def test_job_list_shows_each_jobs_state_by_its_dashboard_name(staff_client):
    by_state = _jobs_in_every_state()
    page = staff_client.get(reverse(JOBS)).content.decode()
    for state in by_state:
        assert f'<span class="kgc-state kgc-state-{state}">{state}</span>' in page


def test_job_list_shows_tenant_times_duration_and_the_last_error_shortened(staff_client):
    job_id = defer("email", tenant_id=31)
    fail(job_id, messages=("the SMTP server refused the recipient " + "x" * 80,))
    results = staff_client.get(reverse(JOBS)).context["cl"].result_list
    job = results[0]
    assert (job.pk, job.queued_at is not None, job.started_at is not None, job.finished_at is not None) == (
        job_id,
        True,
        True,
        True,
    )
    page = staff_client.get(reverse(JOBS)).content.decode()
    row = page[page.index(f">{job_id}</a>") :].split("</tr>")[0]
    assert "31 (gone)" in row  # no tenant 31: the id, said to be gone
    queued = timezone.localtime(job.queued_at)
    assert f">{queued.day} {queued:%b %H:%M:%S}</span>" in row  # today's times too carry their day
    text = "ValueError: the SMTP server refused the recipient " + "x" * 80
    assert f'title="{text}">{display.text_shorten(text, 26)}</span>' in row


def test_job_list_filters_by_when_jobs_finished(staff_client):
    recent, old = defer("email"), defer("email")
    succeed(recent)
    succeed(old)
    events_move(old, by=timedelta(days=3))
    since = (timezone.now() - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")
    results = staff_client.get(reverse(JOBS), {"finished_from": since}).context["cl"].result_list
    assert [job.pk for job in results] == [recent]
    day = (timezone.now() - timedelta(days=3)).date().isoformat()
    results = staff_client.get(reverse(JOBS), {"finished_from": day, "finished_to": day}).context["cl"].result_list
    assert [job.pk for job in results] == [old]


def test_a_bad_finished_date_shows_no_jobs_and_says_why(staff_client):
    succeed(defer("email"))
    response = staff_client.get(reverse(JOBS), {"finished_to": "last tuesday"})
    assert list(response.context["cl"].result_list) == []
    assert _messages(response) == [
        "Finished to: expected a date such as 2026-12-01 or 2026-12-01 14:30, got 'last tuesday'"
    ]


def test_job_list_links_to_a_set_of_jobs_by_id(staff_client):
    wanted = [defer("email"), defer("email")]
    defer("email")
    results = staff_client.get(reverse(JOBS), {"id__in": ",".join(map(str, wanted))}).context["cl"].result_list
    assert sorted(job.pk for job in results) == wanted


# --- The job page ------------------------------------------------------------------------------


def test_a_job_retried_by_hand_numbers_its_attempts_in_order(staff_client):
    job_id = defer("email")
    fail(job_id, messages=("first run",))
    jobs.retry_job(job_id)
    fail(job_id, messages=("second run",))
    page = staff_client.get(reverse(CHANGE_URL, args=[job_id])).content.decode()
    assert re.findall(r"<h3>Attempt (\d+) &middot; .*? &middot; (.*?)</h3>", page) == [
        ("1", "failed for good; retried by hand later"),
        ("2", "failed for good"),
    ]


def test_job_page_shows_the_priority_in_bullmq_numbers(staff_client):
    job_id, _ = jobs.job_defer(task_name="tests.noop_email", kwargs={}, priority=3)
    page = staff_client.get(reverse(CHANGE_URL, args=[job_id])).content.decode()
    assert '<td id="job-priority">3 <span class="kgc-muted">(1 is the highest' in page


def test_job_page_shows_the_return_value_and_the_duration(staff_client):
    job_id = defer("email")
    succeed(job_id)
    JobResult.objects.create(job_id=job_id, value={"clients_scored": 12}, recorded_at=timezone.now())
    page = staff_client.get(reverse(CHANGE_URL, args=[job_id])).content.decode()
    assert "{\n  &quot;clients_scored&quot;: 12\n}" in page
    assert re.search(r'<td id="job-duration">\d+\.\d{3} s</td>', page)


def test_job_page_opens_the_traceback_at_the_projects_frames(staff_client):
    job_id = defer("email")
    fail(job_id, messages=("bad payload",))
    JobFailure.objects.filter(job_id=job_id).update(traceback=TRACEBACK)
    page = staff_client.get(reverse(CHANGE_URL, args=[job_id])).content.decode()
    assert "<details><summary>1 framework frame</summary>" in page
    own = page[page.index('<div class="kgc-own">') :].split("</div>")[0]
    assert "File &quot;/srv/kgc/compliance/tasks.py&quot;, line 30, in refresh_tenant" in own


def test_the_retry_button_is_a_primary_button(staff_client):
    job_id = defer("email")
    fail(job_id)
    page = staff_client.get(reverse(CHANGE_URL, args=[job_id])).content.decode()
    assert 'class="button kgc-primary" href="' + reverse("admin:kgc_job_retry", args=[job_id]) in page
    assert '<ul class="object-tools">' not in page


TRACEBACK = """Traceback (most recent call last):
  File "/usr/lib/python3.12/site-packages/procrastinate/worker.py", line 300, in run_job
    result = await task_result
  File "/srv/kgc/compliance/tasks.py", line 30, in refresh_tenant
    tenant = tenant_get(tenant_id)
ValueError: bad payload"""


def test_a_later_page_of_jobs_shows_its_own_rows_with_their_columns(staff_client):
    ids = [defer("email", tenant_id=n) for n in range(120)]
    results = staff_client.get(reverse(JOBS), {"p": 2}).context["cl"].result_list
    assert [job.pk for job in results] == sorted(ids, reverse=True)[100:]
    assert all(job.queued_at is not None for job in results)


def test_an_unknown_state_shows_no_jobs_and_names_the_known_ones(staff_client):
    defer("email")
    response = staff_client.get(reverse(JOBS), {"status": "todo"})
    assert list(response.context["cl"].result_list) == []
    assert _messages(response) == [
        "Unknown state 'todo': one of waiting, active, delayed, completed, failed, paused, cancelled."
    ]


# --- Who and for whom: tenants by name, the worker of finished jobs, priorities ---------------------


def _ran_on(job_id: int, worker_id: int) -> None:
    """The job's latest attempt ended on that worker, as the finish statement records it."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("UPDATE procrastinate_jobs SET kgc_worker_id = %s WHERE id = %s", [worker_id, job_id])


def test_the_job_list_names_each_tenant_and_links_to_it(staff_client):
    tenant = TenantFactory(name="Kestrel Tax Advisors")
    defer("compliance", tenant_id=tenant.pk)
    defer("compliance", tenant_id=987654)  # a tenant deleted since
    page = staff_client.get(reverse(JOBS)).content.decode()
    link = reverse("admin:compliance_tenant_change", args=[tenant.pk])
    assert f'<a href="{link}" title="Kestrel Tax Advisors (tenant {tenant.pk})">Kestrel Tax Advisors</a>' in page
    assert "987654 (gone)" in page


def test_a_jobs_page_names_its_tenant_and_links_to_it(staff_client):
    tenant = TenantFactory(name="Kestrel Tax Advisors")
    job_id = defer("compliance", tenant_id=tenant.pk)
    page = staff_client.get(reverse(CHANGE_URL, args=[job_id])).content.decode()
    assert reverse("admin:compliance_tenant_change", args=[tenant.pk]) in page and "Kestrel Tax Advisors" in page


def test_finished_jobs_show_the_worker_that_ran_them(staff_client):
    worker = worker_process(host="jobs-1", pid=4107)
    done, failed = defer("email"), defer("email")
    succeed(done)
    fail(failed)
    _ran_on(done, worker)
    _ran_on(failed, worker)
    listing = staff_client.get(reverse(JOBS)).content.decode()
    assert listing.count(f'title="worker {worker} on jobs-1, pid 4107">worker {worker}</span>') == 2
    page = staff_client.get(reverse(CHANGE_URL, args=[done])).content.decode()
    assert f"worker {worker} on jobs-1, pid 4107" in page and "(ran its latest attempt)" in page
    from procrastinate.contrib.django.models import ProcrastinateWorker

    ProcrastinateWorker.objects.filter(pk=worker).delete()  # stopped: its process row goes with it
    page = staff_client.get(reverse(CHANGE_URL, args=[done])).content.decode()
    assert f"worker {worker} (no longer running)" in page


def test_a_job_deferred_with_procrastinates_own_defer_has_the_default_priority(staff_client):
    from procrastinate.contrib.django import app as procrastinate_app

    import tests.kgc.sample_tasks  # noqa: F401

    job_id = procrastinate_app.tasks["tests.noop_email"].defer()
    assert ProcrastinateJob.objects.get(pk=job_id).priority == jobs.priority_to_stored(None)
    page = staff_client.get(reverse(CHANGE_URL, args=[job_id])).content.decode()
    assert '<td id="job-priority">100 <span' in page


def test_a_job_with_a_priority_of_procrastinates_scale_says_where_it_stands(staff_client):
    job_id = defer("email")
    ProcrastinateJob.objects.filter(pk=job_id).update(priority=0)
    page = staff_client.get(reverse(CHANGE_URL, args=[job_id])).content.decode()
    assert "above 1: procrastinate&#x27;s own priority 0" in page


def _oldest_waiting_cell(page: str, queue: str) -> str:
    row = page[page.index(f'<tr data-queue="{queue}">') :].split("</tr>")[0]
    return row[row.index('data-field="oldest_waiting"') :].split("</td>")[0]


def test_a_backlog_held_back_by_the_rate_limit_is_amber_and_says_why(staff_client):
    waiting = [defer("compliance") for _ in range(3)]
    events_move(waiting[0], by=timedelta(minutes=40))
    RateLimitSlot.objects.create(queue_name="compliance", slot=timezone.now(), starts=5)  # its 5 a minute, all used
    page = staff_client.get(reverse(DASHBOARD)).content.decode()
    cell = _oldest_waiting_cell(page, "compliance")
    assert "kgc-paced" in cell and "kgc-backlog" not in cell
    assert "held back by its rate limit (5 / 60 s), as designed: the 3 waiting start within under a minute" in cell
    data = staff_client.get(reverse("admin:kgc_dashboard_data")).json()["queues"]["compliance"]
    assert data["backlog"] == "paced"


def test_a_backlog_the_rate_limit_does_not_explain_is_red(staff_client):
    waiting = [defer("compliance") for _ in range(3)]
    events_move(waiting[0], by=timedelta(minutes=40))
    page = staff_client.get(reverse(DASHBOARD)).content.decode()
    cell = _oldest_waiting_cell(page, "compliance")
    assert "kgc-backlog" in cell and "kgc-paced" not in cell
    assert "not held back by its rate limit" in cell
    assert staff_client.get(reverse("admin:kgc_dashboard_data")).json()["queues"]["compliance"]["backlog"] == "late"
