"""An operator drives the console in a real headless Chromium against a live server: sees a
queue backing up, pauses it, finds why a job failed and retries it; retries jobs in bulk;
refreshes a tenant by hand; reads every custom page in the light and dark themes; reads the
domain lists on a 1280-pixel screen.

Uses Debian's chromium (``apt-get install chromium``) through Playwright; never a browser
that Playwright downloads itself. One browser serves the whole module; each test gets a
fresh context (cookies, theme). Screenshots at 1280 px are kept in ``tests/artifacts/``
(``KGC_SCREENSHOTS`` elsewhere) and named at the end of the run.
"""

from __future__ import annotations

import os
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connections
from django.test import Client
from django.utils import timezone

from compliance.models import Tenant
from kgc.queue import jobs
from notifications.reminders import expiry_reminders_send
from tests.factories import ClientFactory, DocumentFactory, FilingFactory, MembershipFactory, TenantFactory
from tests.helpers import manage, subprocess_env
from tests.kgc.console.conftest import defer, events_move, fail, lease, run_on, shot, status_of, worker_process

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "console-test-password"
WIDTH = 1280
LONG_NAME = "Kilimanjaro Consolidated Holdings and Subsidiaries International Limited"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API keeps an event loop in this thread; the tests' own ORM calls
    # between browser steps are ordinary blocking calls all the same.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        sync_api.expect.set_options(timeout=15_000)  # the dashboard polls every 5 s
        yield browser
        browser.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def open_page(browser, live_server):
    """``open_page(theme="light", user=None)``: a page at 1280 px, logged in as ``user`` if given."""
    contexts = []

    def make(*, theme: str = "light", user: Any = None) -> Any:
        context = browser.new_context(
            base_url=live_server.url, viewport={"width": WIDTH, "height": 900}, color_scheme=theme
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        if user is not None:
            session = Client()
            session.force_login(user)
            cookie = session.cookies[settings.SESSION_COOKIE_NAME].value
            context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": live_server.url}])
        return context.new_page()

    yield make
    for context in contexts:
        context.close()
    # ORM calls made while Playwright's loop ran got their own connection (Django keeps
    # connections per context); close it here, in that same context.
    connections.close_all()


@pytest.fixture
def expect():
    return pytest.importorskip("playwright.sync_api").expect


@pytest.fixture
def operator(db, settings):
    from tests.factories import UserFactory

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast; not what is tested
    user: Any = UserFactory(username="ops", is_staff=True, is_superuser=True)
    user.set_password(PASSWORD)
    user.save()
    return user


def _failed_by_a_real_worker(reason: str) -> int:
    """A job that a worker process ran and that failed for good (a permanent error)."""
    job_id = defer("maintenance", task="tests.fail_permanently", reason=reason)
    result = manage(
        "procrastinate",
        "worker",
        "--queues=maintenance",
        "--one-shot",
        env=subprocess_env(KGC_EXTRA_TASK_MODULES="tests.kgc.sample_tasks"),
        timeout=60,
    )
    assert status_of(job_id) == "failed", result.stdout + result.stderr
    return job_id


def _log_in(page, operator) -> None:
    page.goto("/admin/")
    page.fill("#id_username", operator.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#kgc-console-link")


def _busy_day() -> dict[str, Any]:
    """A console with something in every section: jobs finished over the day, waiting, running
    and failed jobs, a rate-limited queue in use, two workers (one the leader, one with a failing duty)."""
    _finished_over_the_day()
    failed = defer("email", tenant_id=3)
    fail(failed, messages=("SMTP 451: try again later", "SMTP 550: mailbox unavailable"))
    for _ in range(4):
        defer("email", tenant_id=5)
    duties = {
        name: {"state": "running", "restarts": 0, "failing_since": None, "last_error": ""}
        for name in ("listener", "heartbeat", "fetch", "scheduler", "rescue")
    }
    leader = worker_process(
        host="jobs-1", pid=4107, queues=("compliance", "email", "maintenance"), duties=duties,
        concurrency={"compliance": 1, "email": 5, "maintenance": 1},
    )  # fmt: skip
    lease(leader)
    other_duties = {**duties, "scheduler": {"state": "standby", "restarts": 0}}
    other_duties["listener"] = {
        "state": "failing", "restarts": 3, "failing_since": timezone.now().isoformat(timespec="seconds"),
        "last_error": "OperationalError: connection refused",
    }  # fmt: skip
    other = worker_process(host="jobs-2", pid=3991, queues=("email",), concurrency={"email": 5}, duties=other_duties)
    running = defer("email", tenant_id=5)
    run_on(running, leader)
    from kgc.queue.models import RateLimitSlot

    RateLimitSlot.objects.create(queue_name="email", slot=timezone.now(), starts=42)
    return {"failed": failed, "leader": leader, "other": other, "running": running}


# A day of finished jobs in one statement each, with the 08:00 and 02:00 runs' peaks: what
# the chart reads (finishing events), and the jobs they belong to.
FINISHED_DAY_SQL = """
WITH finished AS (
    INSERT INTO procrastinate_jobs (queue_name, task_name, status, args, attempts)
    SELECT queue, 'tests.noop_' || replace(queue, '-', '_'), status::procrastinate_job_status,
           jsonb_build_object('tenant_id', 1 + n %% 9), 1
      FROM generate_series(1, 900) AS n,
           LATERAL (SELECT (ARRAY['email', 'email', 'email', 'email', 'compliance', 'expiry-notification',
                                  'filing-reminder'])[1 + n %% 7] AS queue,
                           CASE WHEN n %% 61 = 0 THEN 'failed' ELSE 'succeeded' END AS status) AS pick
    RETURNING id, status
)
INSERT INTO procrastinate_events (job_id, type, at)
SELECT id, status::text::procrastinate_job_event_type,
       now() - make_interval(secs => CASE WHEN id %% 3 = 0 THEN (id * 7919) %% 86000
                                          WHEN id %% 3 = 1 THEN 3600 * %(peak)s + (id * 13) %% 2400
                                          ELSE 3600 * (%(peak)s + 6) + (id * 17) %% 1500 END)
  FROM finished
"""


def _finished_over_the_day() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(FINISHED_DAY_SQL, {"peak": 4})


# --- The operator's path ----------------------------------------------------------------------


def test_operator_sees_a_backlog_pauses_the_queue_and_retries_a_failed_job(open_page, operator, expect):
    # The compliance queue: its jobs are procrastinate's (the email queue's are the outbox's rows).
    waiting = [defer("compliance") for _ in range(5)]
    events_move(waiting[0], by=timedelta(minutes=40))
    failed = _failed_by_a_real_worker("client 42 has no tax id")

    page = open_page()
    _log_in(page, operator)
    page.click("text=Queue dashboard")
    queue = page.locator('#kgc-queues tr[data-queue="compliance"]')
    expect(queue.locator('[data-field="waiting"]')).to_have_text("5")
    expect(queue.locator('[data-show="paused"].kgc-badge')).to_be_hidden()
    # Waiting 40 minutes with its rate limit unused: not held back as designed, so red.
    expect(queue.locator('[data-field="oldest_waiting"]')).to_have_class(re.compile("kgc-backlog"))
    expect(queue.locator('[data-field="oldest_waiting"]')).to_have_text(re.compile(r"^40m"))

    queue.get_by_role("button", name="Pause", exact=True).click()
    page.click("#confirm-button")
    expect(page.locator("ul.messagelist")).to_contain_text("Paused the compliance queue.")
    expect(queue.locator('[data-show="paused"].kgc-badge')).to_be_visible()
    expect(queue.locator('[data-show="running"].kgc-badge')).to_be_hidden()
    expect(queue.get_by_role("button", name="Resume", exact=True)).to_be_visible()
    assert jobs.is_paused("compliance")

    page.click("text=all failed jobs")
    page.click(f"table#result_list >> text={failed}")
    expect(page.locator(".kgc-exception-type").first).to_have_text("ValueError")
    expect(page.locator(".kgc-exception-message").first).to_have_text("client 42 has no tax id")
    # The project's frame shows; procrastinate's and asyncio's fold away.
    expect(page.locator(".kgc-traceback .kgc-own").last).to_contain_text("tests/kgc/sample_tasks.py")
    expect(page.locator(".kgc-traceback details").first).not_to_have_attribute("open", "")

    page.click("#retry-job")
    page.click("#confirm-button")
    expect(page.locator("ul.messagelist")).to_contain_text(f"Retried 1 failed job: {failed}.")
    expect(page.locator("#job-status")).to_have_text("waiting")
    assert status_of(failed) == "todo"


def test_dashboard_refreshes_on_its_own(open_page, operator, expect):
    page = open_page(user=operator)
    page.goto("/admin/kgc/queuepause/")
    row = page.locator('#kgc-queues tr[data-queue="compliance"]')
    expect(row.locator('[data-field="waiting"]')).to_have_text("0")
    expect(row.locator('[data-show="paused"].kgc-badge')).to_be_hidden()
    first = defer("compliance")
    jobs.pause_queue("compliance")
    # No reload: the page's poll brings the new count and the pause flag.
    expect(row.locator('[data-field="paused"]')).to_have_text("1")
    expect(row.locator('[data-show="paused"].kgc-badge')).to_be_visible()
    expect(row.get_by_role("button", name="Resume", exact=True)).to_be_visible()
    # A backlog its rate limit holds back (its 5 starts a minute all used) turns amber, not red.
    from kgc.queue.models import RateLimitSlot

    jobs.resume_queue("compliance")
    events_move(first, by=timedelta(minutes=40))
    RateLimitSlot.objects.create(queue_name="compliance", slot=timezone.now(), starts=5)
    expect(row.locator('[data-field="oldest_waiting"]')).to_have_class(re.compile("kgc-paced"))
    expect(row.locator('[data-field="oldest_waiting"]')).not_to_have_class(re.compile("kgc-backlog"))


def test_dashboard_shows_capacity_workers_and_a_full_width_chart(open_page, operator, expect):
    scene = _busy_day()
    page = open_page(user=operator)
    page.goto("/admin/kgc/queuepause/")
    email = page.locator('#kgc-capacity tr[data-queue="email"]')
    expect(email.locator('[data-field="concurrency"]')).to_have_text("10")
    expect(email.locator('[data-field="rate_limit"]')).to_have_text("42 of 100 / 60 s")
    leader = page.locator(f'#kgc-workers tr[data-worker="{scene["leader"]}"]')
    expect(leader.locator(".kgc-badge-leader")).to_have_text("leader")
    expect(leader).to_contain_text("jobs-1")
    expect(leader.get_by_role("link", name=str(scene["running"]))).to_be_visible()
    failing = page.locator(f'#kgc-workers tr[data-worker="{scene["other"]}"] .kgc-chip-failing')
    expect(failing).to_contain_text("listener")
    chart, content = page.locator("#kgc-chart").bounding_box(), page.locator("#content-main").bounding_box()
    assert chart["width"] == pytest.approx(content["width"], abs=2)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= WIDTH  # nothing wider than the screen
    shot(page, "dashboard-light")
    page.click("#chart-by-queue")
    expect(page.locator("#kgc-chart polyline")).to_have_count(5)
    shot(page, "dashboard-by-queue-light")


def test_operator_pauses_and_resumes_every_queue(open_page, operator, expect):
    page = open_page(user=operator)
    page.goto("/admin/kgc/queuepause/")
    page.click("#pause-all")
    page.click("#confirm-button")
    expect(page.locator("ul.messagelist")).to_contain_text("Paused 4 queues")
    assert all(jobs.is_paused(name) for name in ("compliance", "expiry-notification", "filing-reminder", "email"))
    page.click("#resume-all")
    page.click("#confirm-button")
    expect(page.locator("ul.messagelist")).to_contain_text("Resumed 4 queues")
    assert not jobs.is_paused("email")


def test_operator_retries_selected_failed_jobs_in_bulk(open_page, operator, expect):
    failed = [defer("email"), defer("email")]
    for job_id in failed:
        fail(job_id)
    untouched = defer("email")
    fail(untouched)
    page = open_page(user=operator)
    page.goto("/admin/procrastinate/procrastinatejob/?status=failed")
    expect(page.locator("#kgc-result-count")).to_have_text("3 jobs")
    for job_id in failed:
        page.check(f'input[name="_selected_action"][value="{job_id}"]')
    page.select_option('select[name="action"]', "retry_jobs")
    page.click('button[name="index"]')
    shot(page, "jobs-retry-confirm-light")
    page.click("#confirm-button")
    expect(page.locator("ul.messagelist")).to_contain_text("Retried 2 failed jobs")
    assert [status_of(job_id) for job_id in (*failed, untouched)] == ["todo", "todo", "failed"]


def test_operator_refreshes_a_tenant_by_hand_and_follows_the_link_to_its_job(open_page, operator, expect):
    tenant = TenantFactory(name="Acme Tax Advisers")
    page = open_page(user=operator)
    page.goto("/admin/compliance/tenant/")
    page.check(f'input[name="_selected_action"][value="{tenant.pk}"]')
    page.select_option('select[name="action"]', "refresh_compliance_now")
    page.click('button[name="index"]')
    expect(page.locator("#trigger-tenants")).to_contain_text("Acme Tax Advisers")
    shot(page, "trigger-confirm-light")
    page.click("#confirm-button")
    expect(page.locator("ul.messagelist")).to_contain_text("Refresh compliance now: queued a compliance refresh")
    page.click("ul.messagelist >> text=See the jobs")
    expect(page.locator("#kgc-result-count")).to_have_text("1 job")
    expect(page.locator("#result_list tbody tr")).to_contain_text("compliance.refresh_tenant")


# --- The admin's own look, in both themes -------------------------------------------------------

BREADCRUMB_STYLE = """() => {
  const crumbs = document.querySelector('nav[aria-label="Breadcrumbs"] ol.breadcrumbs, ol.breadcrumbs');
  if (!crumbs) return null;
  const style = getComputedStyle(crumbs);
  const item = getComputedStyle(crumbs.querySelector('li'));
  return [style.backgroundColor, style.color, style.fontSize, style.paddingTop, item.display];
}"""


def _custom_pages(scene: dict[str, Any]) -> dict[str, str]:
    return {
        "dashboard": "/admin/kgc/queuepause/",
        "jobs": "/admin/procrastinate/procrastinatejob/",
        "job": f"/admin/procrastinate/procrastinatejob/{scene['failed']}/change/",
        "pause-confirm": "/admin/kgc/queuepause/email/pause/",
        "cleanup-confirm": "/admin/kgc/queuepause/cleanup/?queue=email&completed_age=7d",
        "retry-confirm": f"/admin/procrastinate/procrastinatejob/{scene['failed']}/retry/",
        "retry-failed-confirm": "/admin/kgc/queuepause/email/retry-failed/",
    }


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_custom_pages_look_like_the_admins_own_in_both_themes(open_page, operator, theme):
    scene = _busy_day()
    page = open_page(theme=theme, user=operator)
    page.goto("/admin/compliance/tenant/")  # one of the admin's own pages
    reference = page.evaluate(BREADCRUMB_STYLE)
    assert reference is not None
    for name, url in _custom_pages(scene).items():
        page.goto(url)
        assert page.evaluate(BREADCRUMB_STYLE) == reference, f"{name}: breadcrumbs unlike the admin's"
        # Every custom colour comes from the theme: nothing is drawn dark on dark or light on light.
        body = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        states = page.evaluate(
            "() => [...document.querySelectorAll('.kgc-state, .kgc-badge, .kgc-chip')]"
            ".map(e => getComputedStyle(e).backgroundColor)"
        )
        assert body not in states, f"{name}: a badge has the page's own background"
        shot(page, f"{name}-{theme}")


def test_the_retry_button_does_not_look_disabled(open_page, operator):
    job_id = defer("email")
    fail(job_id)
    page = open_page(user=operator)
    page.goto(f"/admin/procrastinate/procrastinatejob/{job_id}/change/")
    retry = page.evaluate(
        "() => { const s = getComputedStyle(document.querySelector('#retry-job'));"
        " return [s.backgroundColor, s.opacity]; }"
    )
    page.goto("/admin/kgc/queuepause/cleanup/?queue=email&completed_age=7d")
    primary = page.evaluate("() => getComputedStyle(document.querySelector('#confirm-button')).backgroundColor")
    assert retry == [primary, "1"]  # the admin's default (primary) button, fully opaque


# --- Lists at 1280 px ---------------------------------------------------------------------------

# The horizontal overflow of a list, measured: its table's scroller (the admin scrolls a table wider
# than its box) and the page itself, each as wide as it is against the room it has.
OVERFLOW = """() => {
  const results = document.querySelector('#changelist .results');
  const columns = [...document.querySelectorAll('#result_list thead th')]
    .map(th => `${th.innerText.trim() || th.className}: ${Math.round(th.getBoundingClientRect().width)}`);
  return {
    table: results ? results.scrollWidth - results.clientWidth : 0,
    page: document.documentElement.scrollWidth - window.innerWidth,
    columns: columns.join(', '),
  };
}"""
LONG_ADDRESS = "compliance.officer.with.a.long.address@kilimanjaro-holdings.example"
LONG_SUBJECT = f"Tax Compliance Certificate of {LONG_NAME} expires in 14 days"


# A big table's ids: the lists must fit with them too.
BIG_IDS = """
SELECT setval(pg_get_serial_sequence(name, 'id'), greatest(12345678, nextval(pg_get_serial_sequence(name, 'id'))))
  FROM unnest(ARRAY['procrastinate_jobs', 'notifications_notification', 'notifications_outboundemail']) AS name
"""


def _domain_rows() -> None:
    """Something long in every column of every list: names, addresses, slugs, errors, states."""
    from django.contrib.auth.models import Group
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(BIG_IDS)

    from compliance.services import refresh_tenant_compliance
    from notifications.models import Digest, EmailEvent, NotificationPreference, OutboundEmail, Suppression
    from tests.factories import DocumentTypeFactory, FilingTaskFactory, RequirementFactory

    tenant = TenantFactory(
        name=LONG_NAME, slug="kilimanjaro-consolidated-holdings", timezone="America/Argentina/Buenos_Aires"
    )
    member = MembershipFactory(
        tenant=tenant,
        role="admin",
        user__email=LONG_ADDRESS,
        user__username="compliance-officer-of-kilimanjaro-consolidated-holdings",
        user__first_name="Wanjiru Nyambura",
        user__last_name="Kamau-Otieno",
    ).user
    Group.objects.create(name=f"Compliance officers of {LONG_NAME}")
    client = ClientFactory(tenant=tenant, name=f"{LONG_NAME} (Nairobi branch)")
    kind = DocumentTypeFactory(
        code="professional-indemnity-insurance-annual-renewal",
        name="Professional Indemnity Insurance Certificate (Annual Renewal)",
    )
    RequirementFactory(client=client, document_type=kind)
    today = timezone.localdate()
    DocumentFactory(client=client, document_type=kind, expires_on=today + timedelta(days=14), title=LONG_SUBJECT)
    filing = FilingFactory(client=client, due_date=date(2026, 6, 8), filing_type="Annual Income Tax Return (Corporate)")
    FilingTaskFactory(filing=filing, assignee=member, title=f"Prepare the annual return of {LONG_NAME}")
    expiry_reminders_send(tenant=Tenant.objects.get(pk=tenant.pk), as_of=today)
    refresh_tenant_compliance(tenant=tenant, as_of=today, triggered_by=f"manual:{LONG_ADDRESS}")
    NotificationPreference.objects.create(tenant=tenant, user=member, kind="filing_escalation", email="daily_digest")
    email = OutboundEmail.objects.filter(tenant=tenant).first()
    assert email is not None
    OutboundEmail.objects.filter(pk=email.pk).update(
        subject=LONG_SUBJECT,
        status="failed",
        delivery_unknown=True,
        attempts=6,
        last_error=f"SMTP 550 5.1.1 <{LONG_ADDRESS}>: Recipient address rejected: User unknown in mailbox table",
    )
    OutboundEmail.objects.create(
        tenant=tenant, to_email=LONG_ADDRESS, subject=LONG_SUBJECT, template="filing-escalation", status="retrying",
        attempts=2, idempotency_key="browser:retrying", last_error="SMTP 451 4.7.1 Greylisted, please try again later",
    )  # fmt: skip
    EmailEvent.objects.create(
        tenant=tenant, outbound_email=email, event_type="complained", event_key="browser:1", provider="Postmark"
    )
    Digest.objects.create(
        tenant=tenant, recipient=member, local_date=today, cutoff=timezone.now(), items_count=12, outbound_email=email
    )
    Suppression.objects.create(
        email=LONG_ADDRESS, reason="complained", tenant=tenant, description="Reported as spam " * 12
    )
    job = defer("email", tenant_id=tenant.pk)
    fail(job, messages=(f"SMTP 550: the mailbox of {LONG_NAME} is unavailable",))


def test_every_admin_list_fits_1280_pixels_with_long_text_whole_on_hover(open_page, operator):
    """Each list the admin has (every registered model, so a new one is measured too), filled with
    long values, has no horizontal overflow: neither its table nor the page scrolls sideways."""
    from django.contrib import admin
    from django.urls import reverse

    _domain_rows()
    page = open_page(user=operator)
    overflowing = []
    for model in admin.site._registry:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        page.goto(url)
        measured = page.evaluate(OVERFLOW)
        shot(page, f"list-{model._meta.app_label}-{model._meta.model_name}-light")
        if measured["table"] > 0 or measured["page"] > 0:
            overflowing.append(f"{url}: {measured}")
    assert not overflowing, "lists wider than 1280 px:\n" + "\n".join(overflowing)

    # Long text is cut to what the column holds, whole on hover: a subject and its recipient
    # keep most of their words, not 18 characters.
    page.goto("/admin/notifications/outboundemail/")
    for cut in page.locator("#result_list .field-subject_and_recipient .kgc-truncate").all():
        shown, whole = cut.inner_text(), cut.get_attribute("title")
        assert len(shown) >= 40 and len(whole) > len(shown), (shown, whole)
