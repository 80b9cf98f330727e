"""An operator drives the console in a real headless Chromium against a live server:
sees a queue backing up, pauses it, finds why a job failed and retries it.

Uses Debian's chromium (``apt-get install chromium``) through Playwright; never a browser
that Playwright downloads itself.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from kgc import jobs
from tests.helpers import manage, subprocess_env
from tests.ops.conftest import defer, events_move, status_of

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

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def page(live_server, monkeypatch, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls
    # between browser steps are ordinary blocking calls all the same.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=live_server.url, viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(15_000)
        sync_api.expect.set_options(timeout=15_000)  # the dashboard polls every 5 s
        page = context.new_page()
        yield page
        context.close()
        browser.close()
        # ORM calls made while Playwright's loop ran got their own connection (Django keeps
        # connections per context); close it here, in that same context.
        connections.close_all()


@pytest.fixture
def operator(db):
    from tests.factories import UserFactory

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


def test_operator_sees_a_backlog_pauses_the_queue_and_retries_a_failed_job(page, operator, tmp_path):
    expect = pytest.importorskip("playwright.sync_api").expect
    waiting = [defer("email") for _ in range(5)]
    events_move(waiting[0], by=timedelta(minutes=40))
    failed = _failed_by_a_real_worker("client 42 has no tax id")

    _log_in(page, operator)
    page.click("text=Queue dashboard")
    email = page.locator('#kgc-queues tr[data-queue="email"]')
    expect(email.locator('[data-field="waiting"]')).to_have_text("5")
    expect(email.locator('[data-show="paused"].kgc-badge')).to_be_hidden()
    expect(email.locator('[data-field="oldest_waiting"]')).to_have_class(re.compile("kgc-backlog"))
    expect(email.locator('[data-field="oldest_waiting"]')).to_have_text(re.compile(r"^40m"))
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

    email.get_by_role("link", name="Pause", exact=True).click()
    page.click("#confirm-button")
    expect(page.locator("ul.messagelist")).to_contain_text("Paused the email queue.")
    expect(email.locator('[data-show="paused"].kgc-badge')).to_be_visible()
    expect(email.locator('[data-show="running"].kgc-badge')).to_be_hidden()
    expect(email.get_by_role("link", name="Resume", exact=True)).to_be_visible()
    assert jobs.is_paused("email")

    page.click("text=all failed jobs")
    page.click(f"table#result_list >> text={failed}")
    expect(page.locator(".kgc-exception-type").first).to_have_text("ValueError")
    expect(page.locator(".kgc-exception-message").first).to_have_text("client 42 has no tax id")
    expect(page.locator(".kgc-traceback").first).to_contain_text("Traceback (most recent call last)")
    page.screenshot(path=str(tmp_path / "failed-job.png"), full_page=True)

    page.click("#retry-job")
    page.click("#confirm-button")
    expect(page.locator("ul.messagelist")).to_contain_text(f"Retried 1 failed job(s): {failed}.")
    expect(page.locator("#job-status")).to_have_text("waiting")
    assert status_of(failed) == "todo"


def test_dashboard_refreshes_on_its_own(page, operator):
    expect = pytest.importorskip("playwright.sync_api").expect
    _log_in(page, operator)
    page.click("text=Queue dashboard")
    row = page.locator('#kgc-queues tr[data-queue="compliance"]')
    expect(row.locator('[data-field="waiting"]')).to_have_text("0")
    expect(row.locator('[data-show="paused"].kgc-badge')).to_be_hidden()
    defer("compliance")
    jobs.pause_queue("compliance")
    # No reload: the page's poll brings the new count and the pause flag.
    expect(row.locator('[data-field="paused"]')).to_have_text("1")
    expect(row.locator('[data-show="paused"].kgc-badge')).to_be_visible()
    expect(row.get_by_role("link", name="Resume", exact=True)).to_be_visible()
