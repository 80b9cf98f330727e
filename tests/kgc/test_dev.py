"""The development admin, API token and banner (``manage.py ensure_admin``)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from kgc import dev

pytestmark = pytest.mark.django_db


@pytest.fixture
def store(tmp_path, settings):
    settings.KGC_DATA_DIR = tmp_path
    settings.KGC_ADMIN_PASSWORD = ""
    settings.KGC_API_TOKENS = []
    settings.DEBUG = True  # pytest-django runs tests with DEBUG off; the command is for development
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast; not what is tested
    return tmp_path


def run(*args: str) -> str:
    out = StringIO()
    call_command("ensure_admin", *args, stdout=out)
    return out.getvalue()


def test_the_admin_gets_the_password_from_kgc_admin_password(store, settings):
    settings.KGC_ADMIN_PASSWORD = "the same every run"
    assert run().strip() == "Admin user created: username admin  password the same every run"
    assert get_user_model().objects.get(username="admin").check_password("the same every run")


def test_the_password_stays_the_same_from_one_run_to_the_next(store):
    run()
    first = dev.dev_credentials_load(store=store)
    assert run().strip() == f"Admin user unchanged: username admin  password {first.password}"
    assert dev.dev_credentials_load(store=store) == first


def test_a_run_with_nothing_changed_keeps_the_admin_logged_in(store):
    """``make run`` again must not log the operator out: the user and its password hash stay."""
    run()
    credentials = dev.dev_credentials_load(store=store)
    browser = Client()
    assert browser.login(username=credentials.username, password=credentials.password)
    before = get_user_model().objects.get(username="admin").password
    run()
    assert get_user_model().objects.get(username="admin").password == before
    assert browser.get("/admin/").status_code == 200  # the session is still valid


def test_an_admin_that_lost_its_rights_gets_them_back(store):
    run()
    get_user_model().objects.filter(username="admin").update(is_superuser=False)
    assert run().startswith("Admin user reset")
    assert get_user_model().objects.get(username="admin").is_superuser


def test_ensure_admin_marks_the_checkout_for_development(store):
    run()
    assert (store / dev.DEVELOPMENT_MARK).is_file()


def test_a_password_changed_in_the_admin_is_replaced_by_a_new_one(store):
    run()
    user = get_user_model().objects.get(username="admin")
    user.set_password("changed by hand")
    user.save()
    run()
    credentials = dev.dev_credentials_load(store=store)
    assert credentials.password != "changed by hand"
    assert get_user_model().objects.get(username="admin").check_password(credentials.password)


def test_the_credentials_file_is_readable_by_its_owner_only(store):
    run()
    assert (store / dev.CREDENTIALS_FILE).stat().st_mode & 0o777 == 0o600


def test_show_prints_the_banner_with_a_ready_curl_line(store):
    run()
    credentials = dev.dev_credentials_load(store=store)
    banner = run("--show", "--url", "http://127.0.0.1:8123")
    assert f"  Password   {credentials.password}\n" in banner
    assert f'curl -H "Authorization: Bearer {credentials.api_token}" http://127.0.0.1:8123/api/v1/queues' in banner
    assert "ensure_admin --show --url http://127.0.0.1:8123" in banner


def test_show_prefers_a_configured_api_token(store, settings):
    run()
    settings.KGC_API_TOKENS = ["configured-token"]
    assert "Bearer configured-token" in run("--show")


def test_show_says_when_the_password_was_changed_since(store):
    run()
    user = get_user_model().objects.get(username="admin")
    user.set_password("changed by hand")
    user.save()
    assert "(changed in the admin since; ensure_admin resets it)" in run("--show")


def test_api_token_prints_the_token_alone(store):
    run()
    assert run("--api-token").strip() == dev.dev_credentials_load(store=store).api_token


def test_show_before_any_credentials_is_exit_code_2(store):
    with pytest.raises(CommandError, match="run `manage.py ensure_admin` first") as raised:
        run("--show")
    assert raised.value.returncode == 2


def test_ensure_admin_refuses_without_debug(store, settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="for development") as raised:
        run()
    assert raised.value.returncode == 2
