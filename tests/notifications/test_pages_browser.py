"""A person follows the links of an email in a real headless Chromium against a live server:
unsubscribes with one click, then picks the daily digest on the preferences page.

Uses Debian's chromium (``apt-get install chromium``) through Playwright; never a browser
that Playwright downloads itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import connections

from notifications.models import NotificationPreference
from notifications.preferences import unsubscribe_token

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)"),
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]


@pytest.fixture
def page(live_server, monkeypatch):
    sync_api = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls
    # between browser steps are ordinary blocking calls all the same.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=live_server.url)
        context.set_default_timeout(15_000)
        yield context.new_page()
        context.close()
        browser.close()
        connections.close_all()


def chosen(user) -> dict[str, str]:
    return dict(NotificationPreference.objects.filter(user=user).values_list("kind", "email"))


def test_a_member_unsubscribes_then_chooses_the_daily_digest(page, tenant, member_of, tmp_path):
    expect = pytest.importorskip("playwright.sync_api").expect
    user = member_of(tenant, "compliance_officer")
    token = unsubscribe_token(user_id=user.pk, tenant_id=tenant.pk, kind="filing_reminder")

    page.goto(f"/notifications/unsubscribe/{token}")
    expect(page.locator("h1")).to_have_text("Unsubscribe from Filing reminder emails?")
    assert chosen(user) == {}  # opening the link changed nothing
    page.click("#unsubscribe-button")
    expect(page.locator("#unsubscribed")).to_contain_text(f"no longer get Filing reminder emails from {tenant.name}")
    assert chosen(user) == {"filing_reminder": "off"}

    page.click("#preferences-link")
    expect(page.locator("#id_filing_reminder_3")).to_be_checked()  # off
    page.check("#kind-document_expiry >> text=Daily digest")
    page.screenshot(path=str(tmp_path / "preferences.png"), full_page=True)
    page.click("#save-button")
    expect(page.locator("#saved")).to_be_visible()
    expect(page.locator("#id_document_expiry_2")).to_be_checked()
    assert chosen(user) == {"filing_reminder": "off", "document_expiry": "daily_digest"}
